// Signatures of files people mistake for checkpoints, so a refusal can say what the file is.
const KNOWN_SIGNATURES: { name: string; bytes: number[] }[] = [
  { name: 'PNG', bytes: [0x89, 0x50, 0x4e, 0x47] },
  { name: 'JPEG', bytes: [0xff, 0xd8, 0xff] },
  { name: 'gzip', bytes: [0x1f, 0x8b] },
  { name: '.npy', bytes: [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59] },
  { name: 'HTML/XML ("<")', bytes: [0x3c] },
];

function hex(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(' ');
}

/** "starts with the PNG signature 89 50 4E 47", or the first bytes in hex when the kind is unknown. */
export function describeStart(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'is empty';
  for (const signature of KNOWN_SIGNATURES) {
    if (bytes.length >= signature.bytes.length && signature.bytes.every((b, i) => bytes[i] === b)) {
      return `starts with the ${signature.name} signature ${hex(bytes.subarray(0, Math.max(4, signature.bytes.length)))}`;
    }
  }
  return `starts with bytes ${hex(bytes.subarray(0, 8))}`;
}
