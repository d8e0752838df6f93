#!/bin/bash
# timeout: 420
# kernels: 6.12
#
# The whole loop on one host: a secondary stack (top, port) whose port is
# exported by nbd-server (flush and fua on) in a second network namespace;
# a primary over a local disk and the NBD client device.  A workload on the
# primary, then checkpoints as COLO takes them (the workload paused: the
# primary's barrier, then the secondary's checkpoint), and at each one the
# secondary's top equals the primary device byte for byte.  Between
# checkpoints the secondary VM writes its top too; the checkpoint drops that.
. "$REPO/tests/vm/lib.sh"

command -v nbd-server >/dev/null && command -v nbd-client >/dev/null ||
	{ echo "# no nbd-server/nbd-client"; exit 77; }
modprobe nbd nbds_max=4 2>/dev/null
modprobe veth 2>/dev/null
[ -b /dev/nbd0 ] || { echo "# no nbd module"; exit 77; }

ram_disks 4 64
S=$(dev_sectors /dev/ram0)
L=/dev/ram0 SEC=/dev/ram1 HID=/dev/ram2 ACT=/dev/ram3
P=/dev/mapper/pri TOP=/dev/mapper/top
NS=dmrsec SERVER=10.252.0.2
MSG="python3 $REPO/tests/vm/dmmsg.py"

cleanup() {
	dmsetup remove pri 2>/dev/null
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
	local pid
	for pid in $(ip netns pids $NS 2>/dev/null); do kill -KILL "$pid"; done
	ip netns del $NS 2>/dev/null
	dm_remove_all
}
trap cleanup EXIT

ip netns add $NS && ip link add dmrp type veth peer name dmrs &&
	ip link set dmrs netns $NS &&
	ip addr add 10.252.0.1/24 dev dmrp && ip link set dmrp up &&
	ip -n $NS addr add $SERVER/24 dev dmrs && ip -n $NS link set dmrs up &&
	ip -n $NS link set lo up || die "cannot make the namespace"

# The secondary host: stack and export.
dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" &&
	dmsetup create port --table "0 $S replication port $SEC" ||
	die "cannot build the secondary stack"
cat >"$TMPDIR/nbd.conf" <<EOF
[generic]
	listenaddr = $SERVER
[port]
	exportname = /dev/mapper/port
	flush = true
	fua = true
EOF
ip netns exec $NS nbd-server -C "$TMPDIR/nbd.conf" || die "nbd-server does not start"
for ((i = 0; i < 50; i++)); do
	(exec 3<>"/dev/tcp/$SERVER/10809") 2>/dev/null && break
	sleep 0.1
done

# The primary host: both disks start zeroed, so nothing is out of sync.
nbd-client -N port $SERVER 10809 /dev/nbd0 -timeout 10 >/dev/null || die "nbd-client"
dmsetup create pri --table "0 $S replication primary $L /dev/nbd0" || die "cannot create pri"
check_eq "$(field pri 1)" running "the primary runs over the port"

for n in 1 2 3; do
	# Both VMs run: the primary's workload, the secondary VM's own writes.
	fio --name=w$n --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bssplit=4k/50:16k/25:512/15:64k/10 --randseed=$n \
		--size=48M --number_ios=1500 --output="$TMPDIR/w$n.out" ||
		not_ok "checkpoint $n: the workload failed"
	fio --name=s$n --filename=$TOP --direct=1 --ioengine=libaio --iodepth=8 \
		--rw=randwrite --bs=4k --randseed=$((n + 100)) --number_ios=300 \
		--output="$TMPDIR/s$n.out" >/dev/null || not_ok "checkpoint $n: secondary writes failed"
	# Both paused: the primary's barrier, then the secondary's checkpoint.
	$MSG pri checkpoint || not_ok "checkpoint $n: the primary's barrier failed"
	$MSG top checkpoint || not_ok "checkpoint $n: the secondary's checkpoint failed"
	if [ "$(sum $TOP)" = "$(sum $P)" ]; then
		ok "checkpoint $n: the secondary's top equals the primary"
	else
		not_ok "checkpoint $n: the secondary's top differs from the primary"
	fi
done
check_eq "$(field pri 1) $(field pri 2)" "running 0" "the primary is still running, no error"
fw=$(field pri 3)
[ "$fw" -ge 4500 ] && ok "$fw writes forwarded" || not_ok "forwarded: $fw"

dmsetup remove pri
nbd-client -d /dev/nbd0 >/dev/null 2>&1
finish
