#!/bin/bash
# timeout: 1500
# needs: guest-kernel
# kernels: 6.12
#
# The whole COLO disk story, end to end, with real parts; `make demo` tells
# it too.
#
#   hosts      network namespaces dmr-pri, dmr-sec (and dmr-trd for step 6)
#              joined by veth pairs; NBD between them
#   disks      dm-linear slices of the scratch disks, one set per host; the
#              secondary's disk is a dm-delay, so its writes can be slowed
#   tools      replctl for every replication step, nbd-server/nbd-client,
#              ext4, fsfreeze, and a nested QEMU guest (tests/vm/nested-guest)
#
#   1. The primary VM's disk holds an ext4 file system.  The secondary joins:
#      the primary syncs it (--sync-all) through an export of its bare disk,
#      then the secondary builds its stack and the primary moves onto the port.
#   2. Checkpoint rounds: the primary's workload writes files (checksums kept)
#      while the secondary VM writes its own top (past the file system's end);
#      at each checkpoint both pause, the file system is frozen, `replctl
#      checkpoint` runs on the primary then the secondary, and the secondary's
#      top equals the primary's disk byte for byte.
#   3. The primary host dies between two checkpoints (processes killed, link
#      cut) after more files reached the port; `replctl failover --wait` runs
#      on the secondary, its disk slowed so that the merge takes a while.
#   4. While the merge runs, a QEMU guest boots with the top device as its
#      disk, finds exactly the last checkpoint's files with their checksums,
#      writes more and shuts down cleanly.
#   5. After `done` the secondary's disk alone passes e2fsck -fn and holds the
#      checkpoint's and the guest's files.
#   6. `replctl promote` turns the survivor into a primary toward a fresh
#      secondary on a third host, with a workload running on it; the new
#      secondary joins as in step 1, and one more checkpoint round passes.
. "$REPO/tests/vm/lib.sh"


REPLCTL=$REPO/tools/replctl/replctl
NESTED=$REPO/tests/vm/nested-guest
MiB=2048			# sectors
DISK_MB=128			# each VM's disk
SIZE=$((DISK_MB * MiB))
FS_MB=96			# the file system; the secondary VM writes past it
ROUNDS=${DMR_STORY_ROUNDS:-2}
DELAY_MS=${DMR_STORY_DELAY_MS:-3000}	# the secondary disk's writes until the guest mounts
T0=$SECONDS

say() { printf '\n== %s (at %d s)\n' "$*" $((SECONDS - T0)); }
tell() { printf '   %s\n' "$*"; }
# on HOST CMD...: run CMD on a host (in its network namespace), echoed.
on() {
	local host=$1
	shift
	echo "   [$host]# $*"
	ip netns exec "dmr-$host" "$@"
}
status() { "$REPLCTL" status "$1" | sed 's/^/      /'; }
# waitfor HOST NAME STATE: replctl wait, its last lines shown
waitfor() {
	on "$1" "$REPLCTL" wait "$2" --until "$3" >"$TMPDIR/wait.out" 2>&1
	local rc=$?
	tail -n 2 "$TMPDIR/wait.out" | sed 's/^/      /'
	return $rc
}
jfield() {	# jfield NAME KEY[.KEY]: one field of replctl status --json
	"$REPLCTL" status "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[k]
print(d)' "$2"
}

[ -x "$REPLCTL" ] || die "no $REPLCTL: run make"
[ -n "${DMR_GUEST_KERNEL:-}" ] && [ -r "$DMR_GUEST_KERNEL" ] ||
	die "no guest kernel (DMR_GUEST_KERNEL='${DMR_GUEST_KERNEL:-}'): tools/guest-kernel builds it"
modprobe nbd nbds_max=8 || die "no nbd module"
modprobe veth || die "no veth module"
modprobe dm-delay || die "no dm-delay module"
modprobe ext4 2>/dev/null

cleanup() {
	local ns pid m
	for m in /mnt/pvm /mnt/svm /mnt/chk; do
		mountpoint -q "$m" && { fsfreeze -u "$m" 2>/dev/null; umount -l "$m"; }
	done
	for ns in pri sec trd; do
		for pid in $(ip netns pids "dmr-$ns" 2>/dev/null); do kill -KILL "$pid"; done
	done
	for n in /dev/nbd[0-7]; do nbd-client -d "$n" >/dev/null 2>&1; done
	for ns in pri sec trd; do ip netns del "dmr-$ns" 2>/dev/null; done
	dm_remove_all
}
trap cleanup EXIT

# ---- hosts, disks, exports ------------------------------------------------

# slice NAME DISK START_MIB SIZE_MIB
slice() {
	dmsetup create "$1" --table "0 $(($4 * MiB)) linear $2 $(($3 * MiB))" ||
		die "cannot make the slice $1"
}
# link A B NET: a veth pair between hosts A (.1) and B (.2)
link() {
	ip link add "$1-$2" netns "dmr-$1" type veth peer name "$2-$1" netns "dmr-$2" &&
		ip -n "dmr-$1" addr add "$3.1/24" dev "$1-$2" &&
		ip -n "dmr-$2" addr add "$3.2/24" dev "$2-$1" &&
		ip -n "dmr-$1" link set "$1-$2" up && ip -n "dmr-$2" link set "$2-$1" up ||
		die "cannot link $1 and $2"
}
host() {
	ip netns add "dmr-$1" && ip -n "dmr-$1" link set lo up || die "cannot make host $1"
}
# export_on HOST ADDR NAME=DEV...: an nbd-server on HOST with those exports,
# flush and fua on (Documentation: "The remote is a network").
export_on() {
	local h=$1 addr=$2 conf=$TMPDIR/nbd-$1.conf e
	shift 2
	printf '[generic]\n\tlistenaddr = %s\n' "$addr" >"$conf"
	for e in "$@"; do
		printf '[%s]\n\texportname = %s\n\tflush = true\n\tfua = true\n' "${e%%=*}" "${e#*=}" >>"$conf"
	done
	on "$h" nbd-server -C "$conf" || die "nbd-server does not start on $h"
	for ((i = 0; i < 100; i++)); do
		ip netns exec "dmr-$h" bash -c "exec 3<>/dev/tcp/$addr/10809" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nbd-server on $h does not listen"
}
stop_exports() {	# stop_exports HOST
	local pid
	for pid in $(ip netns pids "dmr-$1"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nbd-server ] && kill -TERM "$pid"
	done
	for pid in $(ip netns pids "dmr-$1"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nbd-server ] && wait_gone "$pid"
	done
	return 0
}
wait_gone() { while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; }
# The ioctl interface (-nonetlink): 6.1's nbd netlink family is not there in
# a network namespace other than the first.
attach() {	# attach HOST SERVER EXPORT NBDDEV
	on "$1" nbd-client -N "$3" "$2" 10809 "$4" -timeout 10 -nonetlink >/dev/null ||
		die "$1 cannot attach $3 from $2"
}

# ---- workloads --------------------------------------------------------------

# The primary VM's workload: files of random size and content under DIR/data,
# a few rewritten, a syncfs now and then; each write's checksum is appended to
# MANIFEST once the file is whole.  The file STOP ends it between two files.
# Not a signal: bash 5.2 can run a trap while it parses a $(...), and the
# parse then fails ("unexpected EOF while looking for matching `)'").
cat >"$TMPDIR/workload" <<'EOF'
#!/bin/bash
dir=$1 manifest=$2 tag=$3 stop=$4 n=0
mkdir -p "$dir/data"
while [ ! -e "$stop" ]; do
	n=$((n + 1))
	if [ $((n % 5)) = 0 ] && [ -s "$manifest" ]; then
		f=$(awk 'NR % 7 == 1 { f = $2 } END { print f }' "$manifest")
	else
		f=data/$tag-$n
	fi
	head -c $(((RANDOM % 64 + 1) * 4096 + RANDOM % 4096)) /dev/urandom >"$dir/$f" || exit 1
	echo "$(sha256sum <"$dir/$f" | cut -d' ' -f1)  $f" >>"$manifest"
	if [ $((n % 8)) = 0 ]; then
		sync -f "$dir/$f" || exit 1
	fi
done
exit 0
EOF
# The secondary VM's own writes: 4 KiB at random past the file system's end,
# until the file STOP is there.
cat >"$TMPDIR/diverge" <<'EOF'
#!/bin/bash
dev=$1 first=$2 blocks=$3 stop=$4
while [ ! -e "$stop" ]; do
	dd if=/dev/urandom of="$dev" bs=4096 seek=$((first + (RANDOM * 32768 + RANDOM) % blocks)) \
		count=1 oflag=direct conv=notrunc status=none || exit 1
done
exit 0
EOF
chmod +x "$TMPDIR/workload" "$TMPDIR/diverge"

# expected MANIFEST: "sum  path" per file as the file system holds it now.
expected() { tac "$1" | awk '!seen[$2]++' | sort -k2; }

WL_PID="" DV_PID=""
start_workload() {	# start_workload HOST DIR TAG
	rm -f "$TMPDIR/workload.stop"
	ip netns exec "dmr-$1" "$TMPDIR/workload" "$2" "$TMPDIR/manifest" "$3" \
		"$TMPDIR/workload.stop" &
	WL_PID=$!
}
stop_workload() {
	touch "$TMPDIR/workload.stop"
	wait "$WL_PID" || not_ok "the workload on the primary failed"
	WL_PID=""
}
start_diverging() {	# start_diverging HOST DEV
	rm -f "$TMPDIR/diverge.stop"
	ip netns exec "dmr-$1" "$TMPDIR/diverge" "$2" $((FS_MB * 256)) $(((SIZE / 8) - FS_MB * 256)) \
		"$TMPDIR/diverge.stop" &
	DV_PID=$!
}
stop_diverging() {
	touch "$TMPDIR/diverge.stop"
	wait "$DV_PID" || not_ok "the secondary VM's writes failed"
	DV_PID=""
}
# wait_files N: until the workload has written N more files
wait_files() {
	local want=$(($(wc -l <"$TMPDIR/manifest") + $1))
	while [ "$(wc -l <"$TMPDIR/manifest")" -lt "$want" ]; do
		kill -0 "$WL_PID" 2>/dev/null || { not_ok "the workload ended early"; return 1; }
		sleep 0.2
	done
}

# checkpoint_round N PRI SEC MNT PHOST SHOST: both VMs paused, the file system
# frozen, the barrier on the primary, the checkpoint on the secondary; then the
# secondary's top must equal the primary's disk.
checkpoint_round() {
	local n=$1 pri=$2 sec=$3 mnt=$4 ph=$5 sh=$6
	stop_workload
	[ -n "$DV_PID" ] && stop_diverging
	echo "   # fsfreeze -f $mnt"
	fsfreeze -f "$mnt" || not_ok "checkpoint $n: fsfreeze"
	if on "$ph" "$REPLCTL" checkpoint "$pri" && on "$sh" "$REPLCTL" checkpoint "$sec"; then
		ok "checkpoint $n: replctl checkpoint on the primary, then on the secondary"
	else
		not_ok "checkpoint $n: replctl checkpoint failed"
	fi
	if same "/dev/mapper/$pri" "/dev/mapper/$sec"; then
		ok "checkpoint $n: the secondary's top equals the primary's disk, byte for byte"
	else
		not_ok "checkpoint $n: the secondary's top differs from the primary's disk"
	fi
	expected "$TMPDIR/manifest" >"$TMPDIR/checkpoint"
	tell "$(wc -l <"$TMPDIR/checkpoint") files in the file system at checkpoint $n"
	fsfreeze -u "$mnt"
	status "$pri"
	status "$sec"
	return 0
}

# files_of DEV OUT: every file's "sum  path" from an ext4 on DEV, read with
# debugfs (no mount: DEV is held by a dm table).
files_of() {
	rm -rf "$TMPDIR/dump" && mkdir "$TMPDIR/dump" &&
		debugfs -R "rdump /data $TMPDIR/dump" "$1" >/dev/null 2>&1 &&
		(cd "$TMPDIR/dump" && find data -type f | sort | xargs -r sha256sum) >"$2"
}

# ---- 0. the hosts ------------------------------------------------------------

say "0. Two hosts, dmr-pri and dmr-sec (network namespaces joined by a veth pair)"
host pri
host sec
link pri sec 10.77.1
read -r -a D <<<"$DISKS"
slice pri-disk "${D[0]}" 0 $DISK_MB
slice pri-meta "${D[0]}" $DISK_MB 4
dmsetup create sec-disk --table "0 $SIZE delay ${D[1]} 0 0" || die "cannot make sec-disk"
slice sec-meta "${D[1]}" $DISK_MB 4
slice sec-hidden "${D[2]}" 0 96
slice sec-active "${D[2]}" 96 96
tell "primary host: pri-disk (its VM's disk), pri-meta (out-of-sync log)"
tell "secondary host: sec-disk, sec-hidden, sec-active, sec-meta"

# ---- 1. the primary VM's disk, and the secondary joins -------------------------

say "1. The primary VM's file system, and a secondary joins it"
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/pri-disk ${FS_MB}M ||
	die "mkfs.ext4"
mkdir -p /mnt/pvm /mnt/svm
mount -t ext4 /dev/mapper/pri-disk /mnt/pvm || die "mount"
: >"$TMPDIR/manifest"
start_workload pri /mnt/pvm base
wait_files 20
stop_workload
umount /mnt/pvm
tell "the primary's disk holds $(expected "$TMPDIR/manifest" | wc -l) files before the secondary joins"

tell "the secondary exports its bare disk (and, once it exists, its port)"
export_on sec 10.77.1.2 disk=/dev/mapper/sec-disk port=/dev/mapper/svm-port
attach pri 10.77.1.2 disk /dev/nbd0
on pri "$REPLCTL" primary create pvm --local /dev/mapper/pri-disk --remote /dev/nbd0 \
	--metadata /dev/mapper/pri-meta --sync-all || die "replctl primary create"
mount -t ext4 /dev/mapper/pvm /mnt/pvm || die "mount pvm"
start_workload pri /mnt/pvm r1
waitfor pri pvm running || not_ok "the initial sync did not end in running"
check_eq "$(jfield pvm state)" running "the primary is running after the initial sync"

tell "a checkpoint; then the secondary builds its stack over the now-equal disk"
stop_workload
fsfreeze -f /mnt/pvm
on pri "$REPLCTL" checkpoint pvm || not_ok "the first barrier"
if same /dev/mapper/pvm /dev/mapper/sec-disk; then
	ok "after the initial sync the secondary's disk equals the primary's"
else
	not_ok "after the initial sync the secondary's disk differs"
fi
on sec "$REPLCTL" wipe --hidden /dev/mapper/sec-hidden --active /dev/mapper/sec-active --yes ||
	not_ok "replctl wipe"
on sec "$REPLCTL" secondary create svm --secondary /dev/mapper/sec-disk \
	--hidden /dev/mapper/sec-hidden --active /dev/mapper/sec-active --chunk 64k ||
	die "replctl secondary create"
attach pri 10.77.1.2 port /dev/nbd1
on pri "$REPLCTL" primary reload pvm --remote /dev/nbd1 --nolockfs || die "replctl primary reload"
on pri nbd-client -d /dev/nbd0 >/dev/null
expected "$TMPDIR/manifest" >"$TMPDIR/checkpoint"
fsfreeze -u /mnt/pvm
status pvm
status svm
status svm-port
check_eq "$(jfield pvm state) $(jfield svm state)" "running running" \
	"the primary forwards to the port; the secondary runs"

# ---- 2. checkpoint rounds -----------------------------------------------------------

say "2. Both VMs run; $ROUNDS checkpoints"
for ((r = 1; r <= ROUNDS; r++)); do
	start_workload pri /mnt/pvm c$r
	start_diverging sec /dev/mapper/svm
	wait_files 15
	checkpoint_round "$r" pvm svm /mnt/pvm pri sec
done
cp "$TMPDIR/checkpoint" "$TMPDIR/last-checkpoint"

# ---- 3. the primary dies --------------------------------------------------------

say "3. The primary host dies between two checkpoints"
start_workload pri /mnt/pvm lost
start_diverging sec /dev/mapper/svm
wait_files 15
stop_diverging
echo "   [sec]# fio: 600 random 4 KiB writes past the file system (the secondary VM's own)"
ip netns exec dmr-sec fio --name=diverge --filename=/dev/mapper/svm --rw=randwrite --bs=4k \
	--direct=1 --ioengine=libaio --iodepth=8 --offset=${FS_MB}M --size=$((DISK_MB - FS_MB))M \
	--number_ios=600 --randseed=7 --output="$TMPDIR/fio-diverge.out" ||
	not_ok "the secondary VM's writes failed"
cbw=$(jfield svm-port copies)
if [ "$cbw" -gt 0 ]; then
	ok "writes after the last checkpoint reached the secondary ($cbw chunks copied before write)"
else
	not_ok "no write after the last checkpoint reached the port"
fi
tell "the primary's processes are killed and its link is cut"
for pid in $(ip netns pids dmr-pri); do kill -KILL "$pid"; done
wait "$WL_PID" 2>/dev/null
WL_PID=""
ip -n dmr-pri link del pri-sec || not_ok "cutting the link"
status svm

tell "the secondary's disk is slowed (writes +${DELAY_MS} ms) until the guest has mounted its file system,"
tell "so the merge runs under the guest's boot and mount whatever the host's speed"
dmsetup load sec-disk --table "0 $SIZE delay ${D[1]} 0 0 ${D[1]} 0 $DELAY_MS" &&
	dmsetup suspend sec-disk && dmsetup resume sec-disk || die "cannot slow sec-disk"
on sec "$REPLCTL" commit-depth svm 1 || not_ok "replctl commit-depth"
stop_exports sec
on sec "$REPLCTL" failover svm --wait >"$TMPDIR/failover.out" 2>&1 &
FO_PID=$!
"$REPLCTL" wait svm --until failover >/dev/null || not_ok "no failover state"

# ---- 4. a guest on the top device during the merge --------------------------------

say "4. A QEMU guest boots on the secondary's top device while the merge runs"
state=$(jfield svm state)
left=$(jfield svm to_commit.chunks)
check_eq "$state" failover "the merge is running when the guest starts ($left chunks to commit)"
cat >"$TMPDIR/guest.sh" <<'EOF'
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || exit 10
echo "== mounted"
echo "== files"
cd /mnt && find data -type f | sort | xargs sha256sum
echo "== end of files"
i=0
while [ $i -lt 8 ]; do
	head -c $((i * 8192 + 4000)) /dev/urandom >data/guest-$i || exit 11
	i=$((i + 1))
done
echo "== guest files"
sha256sum data/guest-*
echo "== end of guest files"
cd /
umount /mnt || exit 12
EOF
g0=$SECONDS
echo "   # nested-guest --disk /dev/mapper/svm (cache=none, aio=native)"
"$NESTED" --disk /dev/mapper/svm --script "$TMPDIR/guest.sh" --timeout 600 >"$TMPDIR/guest.out" 2>&1 &
GPID=$!
# The guest says when it has mounted the file system: the merge must still run.
while ! grep -q '^== mounted' "$TMPDIR/guest.out" && kill -0 "$GPID" 2>/dev/null; do
	sleep 0.2
done
check_eq "$(jfield svm state)" failover \
	"the merge still runs when the guest has mounted the file system ($(jfield svm to_commit.chunks) chunks to commit, $((SECONDS - g0)) s after its start)"
tell "the secondary's disk back to full speed: the merge goes on under the guest's reads and writes"
dmsetup load sec-disk --table "0 $SIZE delay ${D[1]} 0 0" &&
	dmsetup suspend sec-disk && dmsetup resume sec-disk || not_ok "sec-disk back to full speed"
wait "$GPID"
grc=$?
gsecs=$((SECONDS - g0))
grep -E 'boot|nested' "$TMPDIR/guest.out" | tail -n 3 | sed 's/^/      /'
check_eq "$grc" 0 "the guest mounted the top's file system, wrote, unmounted and powered off (${gsecs}s)"
sed -n '/^== files/,/^== end of files/p' "$TMPDIR/guest.out" | sed '1d;$d' | tr -d '\r' |
	sort -k2 >"$TMPDIR/guest-files"
if [ -s "$TMPDIR/guest-files" ] && cmp -s "$TMPDIR/guest-files" "$TMPDIR/last-checkpoint"; then
	ok "the guest found exactly the last checkpoint's $(wc -l <"$TMPDIR/last-checkpoint") files, checksums right"
else
	not_ok "the guest's files differ from the last checkpoint's"
	diff "$TMPDIR/last-checkpoint" "$TMPDIR/guest-files" | head -n 10
fi
sed -n '/^== guest files/,/^== end of guest files/p' "$TMPDIR/guest.out" | sed '1d;$d' |
	tr -d '\r' >"$TMPDIR/guest-new"
check_eq "$(wc -l <"$TMPDIR/guest-new")" 8 "the guest wrote 8 files"

# ---- 5. the merge ends ----------------------------------------------------------------

say "5. The merge ends; the secondary's disk alone holds the file system"
wait "$FO_PID"
forc=$?
tail -n 3 "$TMPDIR/failover.out" | sed 's/^/      /'
check_eq "$forc $(jfield svm state)" "0 done" "replctl failover --wait ended with done"
# nbd-server read sec-disk through its page cache during the initial sync, and
# the merge wrote under that cache: drop it before reading buffered.
blockdev --flushbufs /dev/mapper/sec-disk
if e2fsck -fn /dev/mapper/sec-disk >"$TMPDIR/fsck.out" 2>&1; then
	ok "e2fsck -fn on the secondary's disk alone: clean"
else
	not_ok "e2fsck -fn on the secondary's disk: $(tail -n 2 "$TMPDIR/fsck.out")"
fi
sort -k2 "$TMPDIR/last-checkpoint" "$TMPDIR/guest-new" >"$TMPDIR/want"
files_of /dev/mapper/sec-disk "$TMPDIR/have" || not_ok "debugfs cannot read the secondary's disk"
if cmp -s "$TMPDIR/want" "$TMPDIR/have"; then
	ok "the secondary's disk holds the checkpoint's and the guest's $(wc -l <"$TMPDIR/want") files"
else
	not_ok "the secondary's disk's files differ"
	diff "$TMPDIR/want" "$TMPDIR/have" | head -n 10
fi
same /dev/mapper/svm /dev/mapper/sec-disk &&
	ok "the top reads the secondary's disk (both stores merged)" ||
	not_ok "the top and the secondary's disk differ after done"

# ---- 6. promote: the story goes round again --------------------------------------------

say "6. The survivor becomes the primary toward a new secondary on host dmr-trd"
host trd
link sec trd 10.77.2
slice trd-disk "${D[3]}" 0 $DISK_MB
slice trd-hidden "${D[3]}" 512 96
slice trd-active "${D[3]}" 640 96
mount -t ext4 /dev/mapper/svm /mnt/svm || die "mount svm"
cp "$TMPDIR/want" "$TMPDIR/manifest"
start_workload sec /mnt/svm p
export_on trd 10.77.2.2 disk=/dev/mapper/trd-disk port=/dev/mapper/tvm-port
attach sec 10.77.2.2 disk /dev/nbd2
kmsg_mark
on sec "$REPLCTL" promote svm --remote /dev/nbd2 --metadata /dev/mapper/sec-meta ||
	not_ok "replctl promote"
status svm
check_eq "$(dmsetup table svm | awk '{print $4}')" primary "svm is now a primary"
waitfor sec svm running || not_ok "the new secondary's sync did not end"
wait_files 10
stop_workload
fsfreeze -f /mnt/svm
on sec "$REPLCTL" checkpoint svm || not_ok "the barrier after promote"
if same /dev/mapper/svm /dev/mapper/trd-disk; then
	ok "the new secondary's disk equals the survivor's after the sync"
else
	not_ok "the new secondary's disk differs after the sync"
fi
on trd "$REPLCTL" secondary create tvm --secondary /dev/mapper/trd-disk \
	--hidden /dev/mapper/trd-hidden --active /dev/mapper/trd-active --chunk 64k ||
	die "replctl secondary create on dmr-trd"
attach sec 10.77.2.2 port /dev/nbd3
on sec "$REPLCTL" primary reload svm --remote /dev/nbd3 --nolockfs || not_ok "replctl primary reload"
on sec nbd-client -d /dev/nbd2 >/dev/null
fsfreeze -u /mnt/svm
if kmsg_since | grep -E 'EXT4-fs error|Buffer I/O error|I/O error, dev dm-'; then
	not_ok "the survivor's file system saw an error during promote"
else
	ok "no I/O or file system error on the survivor during promote"
fi
start_workload sec /mnt/svm q
start_diverging trd /dev/mapper/tvm
wait_files 15
checkpoint_round "$((ROUNDS + 1))" svm tvm /mnt/svm sec trd
files_of /dev/mapper/tvm "$TMPDIR/have" && cmp -s "$TMPDIR/checkpoint" "$TMPDIR/have" &&
	ok "the new secondary's top holds the survivor's $(wc -l <"$TMPDIR/checkpoint") files" ||
	not_ok "the new secondary's files differ from the survivor's"
umount /mnt/svm

say "Verdict"
tell "story time: $((SECONDS - T0)) s; the nested guest: ${gsecs} s"
finish
