#!/bin/bash
# timeout: 420
#
# The primary over a real NBD link: nbd-server runs in a second network
# namespace inside the VM (a veth pair; the addresses exist only in this VM),
# exporting a RAM disk with flush and fua on; the kernel client attaches it
# with -timeout.
#  - fio verify on the primary; the remote (read back through a fresh
#    connection) equals local;
#  - the server is killed in the middle of a fio job: the job sees no error,
#    the primary is degraded with the error, checkpoint fails, reads equal local;
#  - the server is stopped (SIGSTOP) in the middle of a job: writes stall no
#    longer than the client's timeout plus a margin, then the primary is
#    degraded; the job sees no error.
. "$REPO/tests/vm/lib.sh"

command -v nbd-server >/dev/null && command -v nbd-client >/dev/null ||
	{ echo "# no nbd-server/nbd-client"; exit 77; }
modprobe nbd nbds_max=4 2>/dev/null
modprobe veth 2>/dev/null
[ -b /dev/nbd0 ] || { echo "# no nbd module"; exit 77; }

ram_disks 2 64
S=$(dev_sectors /dev/ram0)
L=/dev/ram0 P=/dev/mapper/pri
NS=dmrsec
TIMEOUT=5
MSG="python3 $REPO/tests/vm/dmmsg.py"
SERVER=10.251.0.2

cleanup() {
	dmsetup remove pri 2>/dev/null
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
	stop_server
	ip netns del $NS 2>/dev/null
	dm_remove_all
}
trap cleanup EXIT

ip netns add $NS && ip link add dmrp type veth peer name dmrs &&
	ip link set dmrs netns $NS &&
	ip addr add 10.251.0.1/24 dev dmrp && ip link set dmrp up &&
	ip -n $NS addr add $SERVER/24 dev dmrs && ip -n $NS link set dmrs up &&
	ip -n $NS link set lo up || die "cannot make the namespace"

cat >"$TMPDIR/nbd.conf" <<EOF
[generic]
	listenaddr = $SERVER
[remote]
	exportname = /dev/ram1
	flush = true
	fua = true
EOF

# The server's processes: the listener and one child per connection.
server_pids() { ip netns pids $NS; }
start_server() {
	ip netns exec $NS nbd-server -C "$TMPDIR/nbd.conf" || die "nbd-server does not start"
	local i
	for ((i = 0; i < 50; i++)); do
		(exec 3<>"/dev/tcp/$SERVER/10809") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nbd-server does not answer"
}
stop_server() {
	local pid
	for pid in $(server_pids); do
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
	done
}
attach() { nbd-client -N remote $SERVER 10809 /dev/nbd0 -timeout $TIMEOUT >/dev/null || die "nbd-client"; }
detach() { nbd-client -d /dev/nbd0 >/dev/null 2>&1; }

fio_ok() {	# fio_ok OUT RC WHAT
	if [ "$2" -eq 0 ] && ! grep -qE 'err= *[1-9]' "$1"; then
		ok "$3: the fio job saw no error"
	else
		not_ok "$3: fio failed ($2): $(grep -E 'err= *[1-9]' "$1" | head -3)"
	fi
}
# start_job NAME: a time-based fio write job on the primary, once writes
# are being forwarded; its pid in JOB.
start_job() {
	local fw0 i
	fw0=$(field pri 3)
	fio --name="$1" --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --size=32M --time_based --runtime=12 \
		--output="$TMPDIR/$1.out" &
	JOB=$!
	for ((i = 0; i < 300; i++)); do
		[ "$(field pri 3)" -gt $((fw0 + 300)) ] && return 0
		sleep 0.05
	done
	not_ok "$1: no write forwarded"
}

start_server
attach
dmsetup create pri --table "0 $S replication primary $L /dev/nbd0" || die "cannot create pri"

# ---- fio verify over NBD ----------------------------------------------------------------
if fio --name=v --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bssplit=4k/60:64k/30:512/10 --size=12M --fsync=32 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --output="$TMPDIR/v.out"; then
	ok "fio verify on a primary over NBD"
else
	not_ok "fio verify over NBD: $(grep -iE 'verify|err' "$TMPDIR/v.out" | head -3)"
fi
$MSG pri checkpoint && ok "checkpoint over NBD" || not_ok "checkpoint over NBD"
check_eq "$(sum /dev/ram1)" "$(sum $L)" "the export equals local"

# ---- the server dies in the middle of a job -----------------------------------------------
start_job killed
stop_server
wait_field pri 1 degraded 30 && ok "killed: degraded" || not_ok "killed: $(dmsetup status pri)"
wait $JOB
fio_ok "$TMPDIR/killed.out" $? killed
check_eq "$(field pri 2)" 5 "killed: status records the error"
expect_msg_error pri checkpoint "checkpoint failed: degraded, remote error 5"
check_eq "$(sum $P)" "$(sum $L)" "killed: primary reads equal local"
dmsetup remove pri
detach

# ---- the server hangs in the middle of a job ------------------------------------------------
dd if=$L of=/dev/ram1 bs=1M iflag=direct oflag=direct status=none
start_server
attach
dmsetup create pri --table "0 $S replication primary $L /dev/nbd0" || die "cannot create pri"
start_job hung
t0=$(date +%s%N)
for pid in $(server_pids); do kill -STOP "$pid"; done
wait_field pri 1 degraded $((TIMEOUT + 30)) || not_ok "hung: $(dmsetup status pri)"
stall=$((($(date +%s%N) - t0) / 1000000))
echo "# hung: degraded ${stall} ms after the server stopped (timeout ${TIMEOUT} s)"
if [ "$stall" -le $(((TIMEOUT + 15) * 1000)) ] && [ "$(field pri 1)" = degraded ]; then
	ok "hung: degraded within the timeout plus 15 s (${stall} ms)"
else
	not_ok "hung: degraded after ${stall} ms"
fi
wait $JOB
fio_ok "$TMPDIR/hung.out" $? hung
# fio's longest completion latency: no write waited longer than the bound.
max=$(grep -oE ' clat \((n|u|m)sec\): min=[0-9.]+[kKmM]?, max=[0-9.]+[kKmM]?' "$TMPDIR/hung.out" | head -1)
max_ms=$(awk '{
	unit = $2; v = $4; sub(/^max=/, "", v); m = 1
	if (v ~ /[kK]$/) m = 1e3; if (v ~ /[mM]$/) m = 1e6; sub(/[kKmM]$/, "", v)
	d = unit ~ /nsec/ ? 1e6 : unit ~ /usec/ ? 1e3 : 1
	printf "%d", v * m / d }' <<<"$max")
echo "# hung: $max: the longest write took ${max_ms} ms"
[ -n "$max_ms" ] && [ "$max_ms" -le $(((TIMEOUT + 15) * 1000)) ] &&
	ok "hung: no write stalled longer than the timeout plus 15 s (${max_ms} ms)" ||
	not_ok "hung: a write stalled ${max_ms:-?} ms"
expect_msg_error pri checkpoint "checkpoint failed: degraded"
check_eq "$(sum $P)" "$(sum $L)" "hung: primary reads equal local"
dmsetup remove pri
stop_server
detach
finish
