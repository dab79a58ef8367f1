/**
 * The flat YAML of MLflow's meta.yaml files, as PyYAML's `safe_dump(default_flow_style=False,
 * allow_unicode=True)` writes it: one `key: value` per line, keys sorted, strings plain unless plain text would
 * read back as another type (then single-quoted, e.g. `experiment_id: '0'`). Not a general YAML library:
 * nested maps are skipped on reading, and long strings with spaces are not folded at 80 columns as PyYAML
 * folds them (both forms read back the same).
 */

export type YamlScalar = string | number | boolean | null | readonly never[];
export type YamlMap = Record<string, YamlScalar>;

// PyYAML's implicit resolvers (YAML 1.1): a plain scalar matching one of these is not a string.
const IMPLICIT_NON_STRING = [
  /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/,
  /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/,
  /^(?:<<)$/,
  /^(?:~|null|Null|NULL|)$/,
  /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/,
  /^(?:=)$/,
];

/** Characters PyYAML emits as-is with allow_unicode (no tab or line break: those force double quotes here). */
function isPrintable(ch: string): boolean {
  const c = ch.codePointAt(0)!;
  // U+0085, U+2028 and U+2029 are line breaks to YAML, so they are not printed as they are.
  if (c === 0x2028 || c === 0x2029) return false;
  return (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff) || c >= 0x10000;
}

function plainAllowed(s: string): boolean {
  if (s === '' || s.startsWith(' ') || s.endsWith(' ')) return false;
  if (IMPLICIT_NON_STRING.some((re) => re.test(s))) return false;
  if (s.startsWith('---') || s.startsWith('...')) return false;
  const chars = Array.from(s);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    const next = chars[i + 1];
    const followedBySpace = next === undefined || next === ' ';
    if (!isPrintable(ch)) return false;
    if (i === 0) {
      if ('#,[]{}&*!|>\'"%@`'.includes(ch)) return false;
      if ((ch === '?' || ch === ':' || ch === '-') && followedBySpace) return false;
    } else {
      if (ch === ':' && followedBySpace) return false;
      if (ch === '#' && chars[i - 1] === ' ') return false;
    }
  }
  return true;
}

export function emitYamlScalar(value: YamlScalar): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return '[]';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`meta.yaml numbers are integers here, got ${value}`);
    return String(value);
  }
  const s = value as string;
  if (plainAllowed(s)) return s;
  if (Array.from(s).every(isPrintable)) return `'${s.replace(/'/g, "''")}'`;
  // A JSON string is a valid YAML double-quoted scalar once YAML's extra line breaks are escaped too.
  return JSON.stringify(s).replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The whole file: keys sorted (PyYAML's default), one line each, newline-terminated. */
export function emitYamlMap(map: YamlMap): string {
  return Object.keys(map)
    .sort()
    .map((key) => `${key}: ${emitYamlScalar(map[key])}\n`)
    .join('');
}

/** YAML's white space is space and tab only; String.trim() would also eat a leading U+00A0 that is part of a value. */
function yamlTrim(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '');
}

function resolvePlain(text: string): YamlScalar {
  if (/^(?:~|null|Null|NULL|)$/.test(text)) return null;
  if (/^(?:true|True|TRUE|yes|Yes|YES|on|On|ON)$/.test(text)) return true;
  if (/^(?:false|False|FALSE|no|No|NO|off|Off|OFF)$/.test(text)) return false;
  if (/^[-+]?(?:0|[1-9][0-9]*)$/.test(text)) return Number(text);
  if (/^[-+]?(?:[0-9][0-9]*)\.[0-9]*(?:[eE][-+][0-9]+)?$/.test(text)) return Number(text);
  if (text === '[]') return [];
  return text;
}

function unquoteDouble(body: string): string {
  // YAML's \xNN and \UNNNNNNNN escapes have no JSON spelling; rewrite them first.
  const jsonish = body
    .replace(/\\x([0-9a-fA-F]{2})/g, (_m, hex: string) => `\\u00${hex}`)
    .replace(/\\U([0-9a-fA-F]{8})/g, (_m, hex: string) => {
      const cp = parseInt(hex, 16);
      return JSON.stringify(String.fromCodePoint(cp)).slice(1, -1);
    });
  return JSON.parse(`"${jsonish}"`) as string;
}

/**
 * Reads a flat map. Wrapped scalars (continuation lines indented under a key) are folded back with single
 * spaces, as YAML folds them; keys whose value is a nested block are left out.
 */
export function parseYamlMap(text: string): YamlMap {
  const lines = text.split(/\r?\n/);
  const out: YamlMap = {};
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    i++;
    if (yamlTrim(line) === '' || line.startsWith('#') || line.startsWith('---')) continue;
    if (/^[ \t]/.test(line)) continue; // stray continuation of a skipped nested block
    const colon = line.search(/:( |$)/);
    if (colon <= 0) throw new SyntaxError(`not a 'key: value' line: ${line}`);
    let key = line.slice(0, colon);
    if (key.startsWith("'") || key.startsWith('"')) key = key.startsWith("'") ? key.slice(1, -1).replace(/''/g, "'") : unquoteDouble(key.slice(1, -1));
    let raw = yamlTrim(line.slice(colon + 1));
    const continuation: string[] = [];
    while (i < lines.length && /^[ \t]+[^ \t]/.test(lines[i])) continuation.push(yamlTrim(lines[i++]));
    if (raw === '') {
      if (continuation.length > 0) continue; // nested map or list: not part of the formats read here
      out[key] = null;
      continue;
    }
    if (continuation.length > 0) raw = [raw, ...continuation].join(' ');
    if (raw.startsWith("'")) out[key] = raw.slice(1, raw.lastIndexOf("'")).replace(/''/g, "'");
    else if (raw.startsWith('"')) out[key] = unquoteDouble(raw.slice(1, raw.lastIndexOf('"')));
    else out[key] = resolvePlain(raw);
  }
  return out;
}
