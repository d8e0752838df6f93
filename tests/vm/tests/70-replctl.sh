#!/bin/bash
# timeout: 240
#
# tools/replctl, the operator's tool (issue 13), every subcommand and every
# error path (exit code and its one "replctl: ..." line):
#  1. usage errors (2), unknown or wrong devices (3);
#  2. secondary create: the top and its port, the default chunk, the
#     low water mark; status and status --json (parsed with python3) name
#     every field; status without a name lists the replication devices only;
#  3. checkpoint of several devices stops at the first failure and says which;
#     commit-depth, sync-rate, stop and checkpoint in the wrong mode or state;
#  4. wipe: without --yes it describes the stores and changes no byte; a store
#     held by a table is refused;
#  5. promote of a running secondary and of one whose port is open refused;
#     failover --wait (not a terminal): status lines, then done;
#  6. promote after the failover while a writer keeps writing to the top: no
#     I/O error, old data reads back, the table is a primary, it syncs, the
#     remote gets everything; wait --until running;
#  7. wipe --yes, a new session; a failover whose merge fails (dm-error under
#     the secondary device): failover --wait exits 1, wait --until done 4;
#     its retry on a suspended top (state failover, merge not started):
#     checkpoint, stop and promote refused (4); wait --until done, plain and
#     on a terminal (a progress bar), started before the resume, returns at
#     done;
#  8. the split-brain guard: secondary create over failed-over stores fails on
#     the port, says why, and removes the top again;
#  9. primary create: a smaller remote refused, a primary with features,
#     primary reload (features kept unless given),
#     sync-rate, checkpoint, stop; wait --until running from done refused (4);
#     wait on a device removed meanwhile (3).
. "$REPO/tests/vm/lib.sh"

RC=$REPO/tools/replctl/replctl
[ -x "$RC" ] || die "no $RC: make replctl"

ram_disks 5 16
HID=/dev/ram1 ACT=/dev/ram2 REM=/dev/ram3 META=/dev/ram4
S=$(dev_sectors /dev/ram0)
# The secondary device is a dm device over ram0, so that its first 2 MiB can
# be made to fail writes (dm-error; flushes still pass) during a failover.
dmsetup create sec --table "0 $S linear /dev/ram0 0" || die "cannot create sec"
SEC=/dev/mapper/sec
TOP=/dev/mapper/top
trap 'exec 9>&-; dm_remove_all' EXIT

# expect WANT_RC PATTERN DESCRIPTION CMD...: CMD exits WANT_RC and, unless
# WANT_RC is 0, writes exactly one line to stderr, "replctl: ..." matching the
# extended regexp PATTERN.  Its stdout is in $TMPDIR/out.
expect() {
	local want=$1 pat=$2 what=$3 rc err
	shift 3
	"$@" >"$TMPDIR/out" 2>"$TMPDIR/err"
	rc=$?
	err=$(cat "$TMPDIR/err")
	if [ "$rc" != "$want" ]; then
		not_ok "$what: exit $rc, expected $want: $err"
	elif [ "$want" != 0 ] && { [ "$(wc -l <"$TMPDIR/err")" != 1 ] ||
		! grep -qE "^replctl: .*$pat" "$TMPDIR/err"; }; then
		not_ok "$what: exit $rc, but stderr is not one line matching '$pat': $err"
	else
		ok "$what (exit $rc${err:+: $err})"
	fi
}

# jq-like: json FILE EXPR: python3 evaluates EXPR with d = the parsed JSON.
json() {
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# until_ok CMD...: wait (30 s at most) until CMD succeeds: a background
# process has got that far.
until_ok() {
	local i
	for ((i = 0; i < 300; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
until_file() { until_ok [ "$1" "$2" ]; }

first4k() { dd if="$1" bs=4096 count=1 iflag=direct status=none | sha1sum; }

# ---- 1. usage ------------------------------------------------------------------
expect 0 "" "--help" $RC --help
grep -q "secondary create NAME" "$TMPDIR/out" && ok "--help lists the commands" ||
	not_ok "--help output: $(head -3 "$TMPDIR/out")"
expect 0 "" "help" $RC help
expect 2 "no command" "no command" $RC
expect 2 "bogus: unknown command" "unknown command" $RC bogus
expect 2 "--hidden DEV is required" "secondary create without --hidden" \
	$RC secondary create top --secondary $SEC --active $ACT
expect 2 "--chunk 3000" "chunk not a power of two" \
	$RC secondary create top --secondary $SEC --hidden $HID --active $ACT --chunk 3000
expect 2 "--chunk 2m" "chunk above 1 MiB" \
	$RC secondary create top --secondary $SEC --hidden $HID --active $ACT --chunk 2m
expect 2 "--chunk 2k" "chunk below 4 KiB" \
	$RC secondary create top --secondary $SEC --hidden $HID --active $ACT --chunk 2k
expect 2 "--frob: unknown option" "unknown option" $RC status --frob
expect 2 "--json: not an option of this command" "option of another command" $RC stop top --json
expect 2 "expected a number from 1 to 64" "commit-depth 0" $RC commit-depth top 0
expect 2 "expected KiB/s" "sync-rate fast" $RC sync-rate top fast
expect 2 "missing" "checkpoint without a name" $RC checkpoint
expect 2 "unexpected argument" "stop with two names" $RC stop a b
expect 2 "not a state" "wait --until bogus" $RC wait top --until bogus
expect 3 "nosuch: no such device" "status of an unknown device" $RC status nosuch
expect 3 "nosuch: no such device" "checkpoint of an unknown device" $RC checkpoint nosuch
expect 3 "/dev/nonexistent" "create over a missing device" \
	$RC secondary create top --secondary /dev/nonexistent --hidden $HID --active $ACT

# ---- 2. secondary create, status -------------------------------------------------------
dmsetup create other --table "0 8 zero" || die "cannot create other"
expect 3 "not a replication device" "status of a zero device" $RC status other
expect 2 "--port-copy 96k: expected a power of two from the chunk size to 256 chunks" \
	"a port copy unit that is no power of two" $RC secondary create top --secondary $SEC \
	--hidden $HID --active $ACT --port-copy 96k
expect 2 "--port-copy 32k: expected a power of two from the chunk size to 256 chunks" \
	"a port copy unit below the chunk" $RC secondary create top --secondary $SEC \
	--hidden $HID --active $ACT --port-copy 32k
expect 0 "" "secondary create" $RC secondary create top --secondary $SEC --hidden $HID \
	--active $ACT --low-water-mark 16 --port-copy 64k
check_eq "$(dmsetup table top)" \
	"0 $S replication secondary $(devno $SEC) $(devno $HID) $(devno $ACT) 128 4 low_water_mark 16 port_copy_chunks 1" \
	"the top's table: length, default chunk 64 KiB (128 sectors), low water mark, port copy unit"
check_eq "$(dmsetup table top-port)" "0 $S replication port $(devno $SEC)" "the port's table"
expect 1 "top: a device of that name exists" "create over an existing name" \
	$RC secondary create top --secondary $SEC --hidden $HID --active $ACT

dd if=/dev/urandom of=$TMPDIR/data bs=1M count=2 status=none
dd if=$TMPDIR/data of=$TOP bs=1M oflag=direct status=none || not_ok "write to the top"
dd if=/dev/urandom of=/dev/mapper/top-port bs=64k count=1 seek=100 oflag=direct status=none ||
	not_ok "write to the port"
expect 0 "" "status top" $RC status top
for f in state error active hidden checkpoints to_commit chunk_size low_water_mark \
	port_copy secondary_dev hidden_dev active_dev; do
	grep -qE "^  $f +" "$TMPDIR/out" || not_ok "status top has no field $f"
done
grep -qE '^  active +32/[0-9]+ slots, 2 MiB of ' "$TMPDIR/out" && ok "status: active in slots and MiB" ||
	not_ok "status active: $(grep active "$TMPDIR/out")"
cp "$TMPDIR/out" "$TMPDIR/top.txt"
expect 0 "" "status top --json" $RC status top --json
mv "$TMPDIR/out" "$TMPDIR/top.json"
expect 0 "" "status --json of everything" $RC status --json
mv "$TMPDIR/out" "$TMPDIR/all.json"
# One python3 for every JSON check (it starts slowly under TCG).
if python3 - "$TMPDIR/top.json" "$TMPDIR/all.json" >"$TMPDIR/j" 2>&1 <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
a = json.load(open(sys.argv[2]))
print((d["mode"], d["state"], d["error"], d["chunk_size"]["bytes"], d["active"]["used_slots"],
       d["active"]["used_bytes"], d["hidden"]["used_slots"], d["to_commit"]["chunks"],
       d["low_water_mark"], d["size"]["bytes"], d["progress"]))
print(d["active"]["used_human"])
print(sorted((x["name"], x["mode"]) for x in a))
print([x["copies"] for x in a if x["mode"] == "port"][0])
print((d["port_copy"]["chunks"], d["port_copy"]["bytes"]))
PY
	ok "status --json is valid JSON (one object, and an array)"
else
	not_ok "status --json: $(cat "$TMPDIR/j" "$TMPDIR/top.json" "$TMPDIR/all.json")"
fi
line() { sed -n "$1p" "$TMPDIR/j"; }
check_eq "$(line 1)" "('secondary', 'running', 0, 65536, 32, 2097152, 1, 33, 16, $((S * 512)), None)" \
	"status --json: mode, state, error, chunk, active, hidden, to_commit, lwm, size, progress"
check_eq "$(line 2)" "2 MiB" "human units"
check_eq "$(line 3)" "[('top', 'secondary'), ('top-port', 'port')]" \
	"status without a name: the replication devices only"
check_eq "$(line 4)" 1 "the port's copies field"
check_eq "$(line 5)" "(1, 65536)" "status --json: the port's copy unit (--port-copy 64k)"
grep -qE '^  port_copy +1 chunks, 64 KiB$' "$TMPDIR/top.txt" && ok "status: port_copy in chunks and KiB" ||
	not_ok "status port_copy: $(grep port_copy "$TMPDIR/top.txt")"
expect 0 "" "status of everything (text)" $RC status
grep -q "^top-port: replication port" "$TMPDIR/out" && ! grep -q "^other" "$TMPDIR/out" &&
	ok "text status lists top-port, not other" || not_ok "status: $(cat "$TMPDIR/out")"

# ---- 3. messages in the wrong mode or state ---------------------------------------------
expect 0 "" "checkpoint top" $RC checkpoint top
check_eq "$(field top 5) $(field top 3 | cut -d/ -f1)" "1 0" "the checkpoint happened"
expect 3 "other: not a replication device.*; checkpointed before the failure: top$" "checkpoint top other: stops at other, says top was done" \
	$RC checkpoint top other
check_eq "$(field top 5)" 2 "top was checkpointed before other failed"
expect 3 "is a port device" "checkpoint of the port" $RC checkpoint top-port
expect 0 "" "commit-depth top 4" $RC commit-depth top 4
expect 3 "is a secondary device, not a primary" "sync-rate of a secondary" $RC sync-rate top 100
expect 4 "only a secondary that is done" "promote of a running secondary" \
	$RC promote top --remote $REM
check_eq "$(dmsetup table top | awk '{print $4}')" secondary "the running secondary is unchanged"

# ---- 4. wipe without --yes, wipe of stores in use ------------------------------------------
h0=$(first4k $HID) a0=$(first4k $ACT)
expect 2 "add --yes" "wipe without --yes" $RC wipe --hidden $HID --active $ACT
grep -qE "^hidden $HID \(in use\): REPL store, version 1, role hidden, state running, generation [0-9]+" "$TMPDIR/out" &&
	grep -qE "^active $ACT \(in use\): REPL store, .*role active, state running" "$TMPDIR/out" &&
	ok "wipe without --yes decodes both headers" || not_ok "wipe's description: $(cat "$TMPDIR/out")"
check_eq "$(first4k $HID) $(first4k $ACT)" "$h0 $a0" "wipe without --yes changed nothing"
expect 5 "is in use" "wipe of stores held by the top" $RC wipe --hidden $HID --active $ACT --yes
check_eq "$(first4k $HID) $(first4k $ACT)" "$h0 $a0" "the refused wipe changed nothing"
expect 2 "same device" "wipe of one device twice" $RC wipe --hidden $HID --active $HID --yes

# ---- 5. failover --wait (not a terminal), promote with the port open ---------------------------
dd if=$TMPDIR/data of=$TOP bs=1M oflag=direct status=none || not_ok "write to the top"
expect 0 "" "failover --wait" $RC failover top --wait
grep -qE '^top: secondary (failover|done) ' "$TMPDIR/out" && tail -n 1 "$TMPDIR/out" | grep -qE '^top: secondary done 0 ' &&
	ok "failover --wait prints status lines, the last one done" ||
	not_ok "failover --wait output: $(cat "$TMPDIR/out")"
cat "$TMPDIR/out"
check_eq "$(field top 1)" done "the failover is done"
expect 4 "done already" "failover of a done secondary" $RC failover top
expect 4 "cannot reach running" "wait --until running from done" $RC wait top --until running
expect 0 "" "wait --until done when done" $RC wait top --until done

exec 9<"/dev/mapper/top-port"
expect 5 "port top-port is open" "promote while the port is open" $RC promote top --remote $REM
exec 9<&-
check_eq "$(dmsetup table top | awk '{print $4}') $(dmsetup info -c --noheadings -o name top-port)" \
	"secondary top-port" "the refused promote changed nothing"

# ---- 6. promote under a running writer --------------------------------------------------------
# The writer writes 64 KiB blocks from 4 MiB on, round and round, until told
# to stop; it exits non-zero on any error.
python3 - "$TOP" "$TMPDIR/stop" "$TMPDIR/writer" <<'PY' &
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 65536)
n = 0
while not os.path.exists(sys.argv[2]):
    buf[0:8] = n.to_bytes(8, "little")
    os.pwrite(fd, buf, 4 * 2**20 + (n % 64) * 65536)
    n += 1
    if n == 16:
        open(sys.argv[3], "w").close()
os.fsync(fd)
print("writer: %d writes" % n)
PY
WRITER=$!
until_file -e "$TMPDIR/writer" || not_ok "the writer did not start"
expect 0 "" "promote top (with the writer running)" $RC promote top --remote $REM --metadata $META
cat "$TMPDIR/out"
check_eq "$(dmsetup table top)" \
	"0 $S replication primary $(devno $SEC) $(devno $REM) 3 metadata $(devno $META) sync_all" \
	"top is now a primary over the secondary device"
dmsetup info top-port >/dev/null 2>&1 && not_ok "the port is still there" || ok "the port was removed"
case $(field top 1) in syncing | running) ok "the primary is $(field top 1)" ;;
*) not_ok "the primary is $(field top 1)" ;; esac
expect 0 "" "wait --until running" $RC wait top --until running
tail -n 1 "$TMPDIR/out" | grep -q "^top: primary running 0 " && ok "wait printed the running status" ||
	not_ok "wait output: $(cat "$TMPDIR/out")"
touch "$TMPDIR/stop"
wait $WRITER && ok "the writer saw no I/O error across the promote" || not_ok "the writer failed"
check_eq "$(dd if=$TOP bs=1M count=2 iflag=direct status=none | sha1sum)" \
	"$(sha1sum <"$TMPDIR/data")" "data written before the promote reads back"
same $TOP $REM && ok "the remote equals the primary after the sync" || not_ok "the remote differs"
expect 0 "" "status --json of the primary" $RC status top --json
check_eq "$(json "$TMPDIR/out" '(d["mode"], d["state"], d["out_of_sync"]["regions"], d["sync_all"], d["writes_forwarded"] > 0)')" \
	"('primary', 'running', 0, True, True)" "primary's JSON fields"
expect 0 "" "sync-rate top 10m" $RC sync-rate top 10m
expect 0 "" "checkpoint of the primary" $RC checkpoint top
expect 3 "is a primary device, not a secondary" "commit-depth of a primary" $RC commit-depth top 8
expect 3 "is a primary device, not a secondary" "failover of a primary" $RC failover top

# ---- 7. wipe, a new session, failover of a suspended top ------------------------------------
expect 0 "" "wipe after the stores are released" $RC wipe --hidden $HID --active $ACT --yes
check_eq "$(first4k $HID) $(first4k $ACT)" \
	"$(head -c 4096 /dev/zero | sha1sum) $(head -c 4096 /dev/zero | sha1sum)" "wipe zeroed both headers"
$RC wipe --hidden $HID --active $ACT >"$TMPDIR/out" 2>/dev/null
check_eq "$(cut -d: -f2 "$TMPDIR/out" | tr -d ' ' | tr '\n' ' ')" "blank blank " "wipe describes blank stores"
dmsetup remove top || not_ok "remove the primary"
expect 0 "" "a new session" $RC secondary create top --secondary $SEC --hidden $HID --active $ACT --chunk 4k
check_eq "$(field top 1) $(dmsetup table top | awk '{print $8}')" "running 8" "running, 4 KiB chunks"
dd if=$TMPDIR/data of=$TOP bs=1M oflag=direct status=none || not_ok "write to the top"
printf '0 4096 error\n4096 %d linear /dev/ram0 4096\n' $((S - 4096)) | dmsetup load sec &&
	dmsetup resume sec || not_ok "cannot make sec fail"
expect 1 "top: is failover_failed \(error 5, .*cannot reach done" \
	"failover --wait when the merge fails" $RC failover top --wait
check_eq "$(field top 1) $(field top 2)" "failover_failed 5" "the failover failed with error 5"
expect 4 "top: is failover_failed \(error 5, .*cannot reach done" "wait --until done in failover_failed" \
	$RC wait top --until done
expect 4 "the device is failover_failed, not running" "checkpoint in failover_failed" $RC checkpoint top
dmsetup load sec --table "0 $S linear /dev/ram0 0" && dmsetup resume sec || not_ok "cannot repair sec"
dmsetup suspend top || not_ok "suspend top"
expect 0 "" "failover (a retry) of the suspended top" $RC failover top
check_eq "$(field top 1)" failover "failover, its merge not started"
expect 4 "the device is failover, not running" "checkpoint in failover" $RC checkpoint top
expect 4 "the secondary is failover" "stop in failover" $RC stop top
expect 4 "the secondary is failover" "promote in failover" $RC promote top --remote $REM
$RC wait top --until done >"$TMPDIR/wait" 2>&1 &
WAIT=$!
until_file -s "$TMPDIR/wait" || not_ok "wait printed nothing"
head -n 1 "$TMPDIR/wait" | grep -qE "^top: secondary failover [0-9]+ " && ok "wait shows the failover" ||
	not_ok "wait's first line: $(cat "$TMPDIR/wait")"
# The same on a terminal (script(1) gives it one): a progress bar.
script -qfec "$RC wait top --until done" "$TMPDIR/tty" </dev/null >/dev/null 2>&1 &
TTYWAIT=$!
until_ok grep -sqE "top: \[-{40}\] +0\.0% +[0-9]+/[0-9]+ chunks left" "$TMPDIR/tty" &&
	ok "on a terminal, wait draws a progress bar" || not_ok "no progress bar: $(cat -A "$TMPDIR/tty")"
dmsetup resume top || not_ok "resume top"
wait $WAIT && ok "wait --until done returned 0" || not_ok "wait --until done: $(cat "$TMPDIR/wait")"
wait $TTYWAIT && ok "wait --until done on a terminal returned 0" || not_ok "wait on a terminal failed"
grep -qa "^top: secondary done 0 " "$TMPDIR/tty" && ok "on a terminal too, done ends it" ||
	not_ok "tty output: $(cat -A "$TMPDIR/tty")"
cat "$TMPDIR/wait"
tail -n 1 "$TMPDIR/wait" | grep -q "^top: secondary done 0 " && ok "wait's last line is done" ||
	not_ok "wait's last line: $(tail -n 1 "$TMPDIR/wait")"
check_eq "$(field top 1)" done "top is done"


# ---- 8. the split-brain guard ----------------------------------------------------------------
dmsetup remove top-port top || not_ok "remove top and its port"
expect 1 "Session failed over" "secondary create over failed-over stores" \
	$RC secondary create top --secondary $SEC --hidden $HID --active $ACT --chunk 4k
dmsetup info top >/dev/null 2>&1 && not_ok "the top was left behind" || ok "the top was removed again"
grep -q "top was removed again" "$TMPDIR/err" && ok "replctl says the top was removed" ||
	not_ok "no word of the removal: $(cat "$TMPDIR/err")"

# ---- 9. primary create ---------------------------------------------------------------------
dmsetup create small --table "0 $((S / 2)) linear $REM 0" || die "cannot create small"
expect 1 "smaller than local device" "primary over a smaller remote" \
	$RC primary create pri --local $SEC --remote /dev/mapper/small
expect 2 "--region-size 3k" "bad region size" $RC primary create pri --local $SEC --remote $REM --region-size 3k
expect 0 "" "primary create" $RC primary create pri --local $SEC --remote $REM --region-size 64k --sync-all
check_eq "$(dmsetup table pri)" "0 $S replication primary $(devno $SEC) $(devno $REM) 3 region_size 128 sync_all" \
	"the primary's table"
expect 0 "" "wait pri --until running" $RC wait pri --until running
expect 2 "--remote DEV is required" "primary reload without --remote" $RC primary reload pri
expect 1 "smaller than pri" "primary reload onto a smaller remote" \
	$RC primary reload pri --remote /dev/mapper/small
expect 0 "" "primary reload onto the same remote" $RC primary reload pri --remote $REM
check_eq "$(dmsetup table pri)" "0 $S replication primary $(devno $SEC) $(devno $REM) 2 region_size 128" \
	"the reload kept the region size and dropped sync_all"
check_eq "$(field pri 1)" running "the reloaded primary runs: nothing was out of sync"
expect 0 "" "primary reload --nolockfs" $RC primary reload pri --remote $REM --nolockfs
expect 0 "" "sync-rate pri 1000" $RC sync-rate pri 1000
expect 0 "" "stop pri" $RC stop pri
check_eq "$(field pri 1)" done "the primary is done"
expect 4 "the device is done, not running" "checkpoint of a stopped primary" $RC checkpoint pri
expect 4 "cannot reach running" "wait --until running of a stopped primary" $RC wait pri --until running
$RC wait pri >"$TMPDIR/wait-pri" 2>&1 &
WAIT=$!
until_file -s "$TMPDIR/wait-pri" || not_ok "wait printed nothing"
dmsetup remove pri || not_ok "remove pri"
wait $WAIT
check_eq "$? $(tail -n 1 "$TMPDIR/wait-pri")" "3 replctl: pri: the device was removed" \
	"wait on a device that is removed meanwhile"
dmsetup remove small other

finish
