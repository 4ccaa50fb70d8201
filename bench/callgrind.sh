#!/usr/bin/env bash
# Instructions per WeChat v2 notification, counted by valgrind's callgrind: unlike seconds, the
# count repeats on a shared, noisy machine (same build, same inputs: the same to 0.2 %).
#
#   bench/callgrind.sh [DIR]    DIR holds `paybridge` and `paybridge-bench` (default: target/release)
#
# The driver starts the gateway under callgrind (through a wrapper script), seeds 10^3 orders,
# creates 2 500 through the API, and sends notifications for 6 s. The counters are zeroed when
# the driver starts measuring and dumped 6 s later; the dump's instructions are divided by the
# calls of `paybridge_wechat::xml::decode` in it (one per notification). Needs valgrind
# (Debian: `apt-get install valgrind`). Takes about two minutes.
set -euo pipefail
dir=$(cd "${1:-target/release}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/gateway" <<WRAP
#!/usr/bin/env bash
exec valgrind --tool=callgrind --collect-atstart=yes --callgrind-out-file=$work/cg.out "$dir/paybridge" "\$@"
WRAP
chmod +x "$work/gateway"
"$dir/paybridge-bench" wechat-notify --seed 1000 --duration 6 --notify-orders 2500 \
  --gateway-bin "$work/gateway" > "$work/driver.log" 2>&1 &
driver=$!
for _ in $(seq 1 600); do
  grep -q "measuring" "$work/driver.log" 2>/dev/null && break
  sleep 1
done
pid=$(grep -o "gateway pid [0-9]*" "$work/driver.log" | tail -1 | awk '{print $3}')
[ -n "$pid" ] || { cat "$work/driver.log"; echo "no gateway pid" >&2; exit 1; }
# callgrind_control finds the process by its control file, which a loaded machine may not have
# written yet: try again (bounded) rather than count the whole run.
control() {
  for _ in $(seq 1 20); do
    # It exits 0 even when it found no such process; its message says so.
    out=$(callgrind_control "$1" "$pid" 2>&1 || true)
    case "$out" in *"not detected"*) ;; *) return 0 ;; esac
    sleep 0.5
  done
  echo "callgrind_control $1 $pid failed 20 times" >&2
  return 1
}
control -z
sleep 6
control -d
wait "$driver" || { cat "$work/driver.log"; exit 1; }
dump=$(ls "$work"/cg.out.* 2>/dev/null | head -1)
[ -n "$dump" ] || { echo "no dump of the measured window in $work" >&2; exit 1; }
python3 - "$dump" <<'PY'
import re, sys
names, calls, total, callee = {}, 0, None, None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2)
        if line.startswith("cfn="):
            callee = names.get(m.group(1), "")
        continue
    if line.startswith("calls=") and callee is not None:
        if callee == "paybridge_wechat::xml::decode":
            calls += int(line.split("=")[1].split()[0])
        callee = None
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
if not total or not calls:
    sys.exit(f"nothing counted (instructions {total}, notifications {calls})")
print(f"{total} instructions, {calls} notifications: {total // calls} instructions per notification")
PY
