#!/usr/bin/env bash
# The Slurm setup of `harmoq exp --emit slurm`, tested for real (issue 11): starts a throwaway one-node Slurm
# cluster on localhost from Debian's packages (munged, slurmctld, slurmd; state, logs, sockets and ports of
# its own in a temp folder, no cgroups), emits a small baselines grid (x4 Set5: the float model, and minmax
# W4A4 = one calibration and its eval, so one dependency), submits it with the emitted submit.sh, waits for
# every job, then checks that every cell landed exactly once under results/cells (one result, one run logged,
# no claim or temp file left), the tables job ran, and a re-emit has nothing left to run. Stops the daemons
# and exits non-zero on any failure. Results and the MLflow store go to the temp folder, never the repo's.
#
#   bash scripts/slurm-local-test.sh        # needs root (or the packages installed and a user that may run them)
#
# Env: HARMOQ_DATA (default ../shared/data), SLURM_TEST_TIMEOUT (seconds to wait for the jobs, default 900),
# SLURM_TEST_KEEP=1 keeps the temp folder. Installs slurmctld slurmd munge slurm-client with apt-get when missing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${HARMOQ_DATA:-$repo/../shared/data}"
timeout_s="${SLURM_TEST_TIMEOUT:-900}"
started=$(date +%s)
log() { echo "[slurm-local-test +$(( $(date +%s) - started ))s] $*"; }
fail() { echo "slurm-local-test: FAIL: $*" >&2; exit 1; }

# ---- packages ----
missing=()
for bin in munged slurmctld slurmd sbatch squeue scontrol sinfo; do
  command -v "$bin" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
export PATH="$PATH:/usr/sbin:/sbin"
if ((${#missing[@]})); then
  log "missing ${missing[*]}: installing slurmctld slurmd munge slurm-client"
  command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and apt-get is not available: install Slurm (slurmctld, slurmd, munge, sbatch/squeue) another way"
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}: run as root to let this script apt-get install slurmctld slurmd munge slurm-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y slurmctld slurmd munge slurm-client >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y slurmctld slurmd munge slurm-client >/dev/null; } \
    || fail "apt-get install slurmctld slurmd munge slurm-client failed"
fi
[ "$(id -u)" = 0 ] || fail "slurmd must run as root here (SlurmdUser=root); rerun as root"
[ -d "$data/benchmarks/Set5" ] || fail "no data folder at $data (set HARMOQ_DATA)"

# ---- the cluster ----
tmp="$(mktemp -d /tmp/harmoq-slurm-XXXXXX)"
mkdir -p "$tmp"/{munge,state,spool,log}
chmod 700 "$tmp/munge"
head -c 1024 /dev/urandom > "$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
# Ports of our own, so a Slurm already on this machine is neither used nor disturbed.
port=$(( 20000 + ($$ % 20000) ))
export SLURM_CONF="$tmp/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=harmoqtest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

cleanup() {
  local rc=$?
  set +e
  if [ -f "$tmp/slurmctld.pid" ] || [ -f "$tmp/slurmd.pid" ]; then
    scontrol shutdown >/dev/null 2>&1
    for _ in $(seq 1 20); do
      pgrep -F "$tmp/slurmctld.pid" >/dev/null 2>&1 || pgrep -F "$tmp/slurmd.pid" >/dev/null 2>&1 || break
      sleep 0.5
    done
    for pidfile in "$tmp/slurmctld.pid" "$tmp/slurmd.pid"; do [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; done
  fi
  [ -S "$tmp/munge/munge.sock" ] && munged --stop --socket="$tmp/munge/munge.sock" >/dev/null 2>&1
  if [ "$rc" != 0 ]; then
    echo "---- logs (temp folder $tmp kept) ----" >&2
    for f in "$tmp"/log/*.log "$tmp"/setup/logs/*; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 25 "$f" >&2; }; done
  elif [ "${SLURM_TEST_KEEP:-}" = 1 ]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  log "daemons stopped; total $(( $(date +%s) - started )) s"
  exit "$rc"
}
trap cleanup EXIT

munged --force --socket="$tmp/munge/munge.sock" --key-file="$tmp/munge/munge.key" --pid-file="$tmp/munge/munged.pid" \
  --seed-file="$tmp/munge/seed" --log-file="$tmp/log/munged.log" || fail "munged did not start"
slurmctld -i || fail "slurmctld did not start"
slurmd -N localhost || fail "slurmd did not start"
for _ in $(seq 1 60); do
  state="$(sinfo -h -n localhost -o '%T' 2>/dev/null || true)"
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || fail "node localhost is '$state', not idle, after 60 s"
log "cluster up: $(sinfo -h -o '%P %D node, %c CPUs, %T')"

# ---- emit and submit ----
results="$tmp/results"
out="$tmp/setup"
export MLFLOW_TRACKING_URI="file:$tmp/mlruns"
grid=(baselines --only scale=4 --only dataset=Set5 --only method=minmax,fp --only bits=W4A4)
cd "$repo"
npx harmoq exp "${grid[@]}" --emit slurm --out "$out" --results "$results" --data "$data" --slurm-cpus 1 --slurm-time 20:00
cells=$(tail -n +2 "$out/cells.tsv" | wc -l)
[ "$cells" -gt 1 ] || fail "the setup has $cells cells to run; expected a fresh grid"
bash "$out/submit.sh"
jobs="$(paste -sd, "$out/jobs.txt")"

# ---- wait ----
log "waiting for jobs $jobs (timeout ${timeout_s} s)"
deadline=$(( $(date +%s) + timeout_s ))
while :; do
  states="$(squeue -h -r --states=all -j "$jobs" -o '%i %T %j %r')"
  active="$(grep -E ' (PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|RESIZING) ' <<<"$states" || true)"
  [ -z "$active" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "$states" >&2; scancel "${jobs//,/ }"; fail "jobs still running after ${timeout_s} s"; }
  sleep 3
done
echo "$states" | sed 's/^/  /'

# ---- checks ----
bad="$(grep -v ' COMPLETED ' <<<"$states" || true)"
[ -z "$bad" ] || fail "jobs did not complete: $bad"
tasks=$(grep -c 'harmoq-baselines ' <<<"$states" || true)
[ "$tasks" = "$cells" ] || fail "$tasks cell tasks ran; the setup has $cells cells"
grep -q 'harmoq-baselines-tables ' <<<"$states" || fail "no tables job"

tail -n +2 "$out/cells.tsv" | while IFS=$'\t' read -r index key label _after; do
  dir="$results/cells/$key"
  case "$key" in cal-*) result=qparams.json ;; *) result=metrics.json ;; esac
  [ -f "$dir/$result" ] || fail "cell $index ($label) has no $result in $dir"
  [ -f "$dir/config.json" ] || fail "cell $index ($label) has no config.json"
  [ ! -e "$dir/running.lock" ] || fail "cell $index ($label) left its claim file"
  logfile=("$out"/logs/harmoq-baselines-*_"$index".out)
  [ -f "${logfile[0]}" ] || fail "no log for cell $index"
  grep -q "^$key $label: done in" "${logfile[0]}" || fail "cell $index log does not say it ran: $(tail -n 3 "${logfile[0]}")"
  runs=$(grep -lx "$key" "$tmp"/mlruns/*/*/tags/harmoq.cellKey 2>/dev/null | wc -l)
  [ "$runs" = 1 ] || fail "cell $index ($label) has $runs MLflow runs, expected 1"
  echo "  cell $index $key $label: stored once, 1 run, log: $(grep -h 'done in' "${logfile[0]}")"
done
stored=$(find "$results/cells" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$stored" = "$cells" ] || fail "$stored cell folders under results/cells, expected $cells"
leftovers="$(find "$results" "$tmp/mlruns" -name '*.tmp' -o -name '*.abandoned' -o -name 'running.lock')"
[ -z "$leftovers" ] || fail "temp files left: $leftovers"
tables_log=("$out"/logs/harmoq-baselines-tables-*.out)
grep -q "$cells of $cells selected cells finished" "${tables_log[0]}" || fail "tables job: $(tail -n 5 "${tables_log[0]}")"
[ -f "$results/baselines/baselines.json" ] && [ -f "$results/baselines/tables/baselines-x4.md" ] || fail "tables job wrote no rows file or table"
log "tables job: $(grep -h 'selected cells finished' "${tables_log[0]}" | cut -c1-100)"
sed 's/^/  /' "$results/baselines/tables/baselines-x4.md"

# A second emit finds every cell finished: nothing left to submit but the tables.
npx harmoq exp "${grid[@]}" --emit slurm --out "$tmp/setup2" --results "$results" --data "$data" --slurm-cpus 1 >/dev/null
[ "$(tail -n +2 "$tmp/setup2/cells.tsv" | wc -l)" = 0 ] || fail "a re-emit still has cells to run"
grep -q 'afterok' "$tmp/setup2/submit.sh" && fail "a re-emit still submits cell arrays"
log "PASS: $cells cells, each stored once with one MLflow run; tables built; re-emit has nothing to run"
