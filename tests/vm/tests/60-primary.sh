#!/bin/bash
# timeout: 360
#
# The primary's data path and failure rules:
#  - its feature arguments are parsed as the contract says;
#  - fio verify on the primary; local and remote equal byte for byte; the
#    forwarded count counts the writes;
#  - the remote fails in the middle of a fio job (dm-flakey error_writes,
#    then dm-error): the job sees no error, the status says degraded with the
#    error, checkpoint fails, reads equal local, nothing more is forwarded,
#    and exactly the regions written since are out of sync;
#  - stop, sync_rate and checkpoint in each state.
# local and remote are dm-linear wrappers over RAM disks, so the remote's
# table can be swapped for dm-flakey or dm-error under a live primary.
. "$REPO/tests/vm/lib.sh"

modprobe dm-flakey 2>/dev/null
dmsetup targets | grep -q '^flakey' || { echo "# no dm-flakey"; exit 77; }

ram_disks 3 64
S=$(dev_sectors /dev/ram0)
NREG=$((S / 1024))
L=/dev/mapper/plocal R=/dev/mapper/premote P=/dev/mapper/pri
MSG="python3 $REPO/tests/vm/dmmsg.py"
trap 'dm_remove_all' EXIT

dmsetup create plocal --table "0 $S linear /dev/ram0 0" &&
	dmsetup create premote --table "0 $S linear /dev/ram1 0" ||
	die "cannot create the wrappers"

remote_table() {	# remote_table linear|flakey|error
	case $1 in
	linear) echo "0 $S linear /dev/ram1 0" ;;
	flakey) echo "0 $S flakey /dev/ram1 0 0 3600 1 error_writes" ;;
	error) echo "0 $S error" ;;
	esac
}
set_remote() { dmsetup load premote --table "$(remote_table "$1")" && dmsetup resume premote; }

# ---- tables ---------------------------------------------------------------------
bad() { expect_ctr_error bad "0 $S replication primary $L $R $1" "$2"; }
bad "1 region_size" "Feature needs an argument"
bad "2 region_size 12" "Invalid region_size: expected a power of two from 8 to 2097152 sectors"
bad "2 region_size 4" "Invalid region_size: expected a power of two from 8 to 2097152 sectors"
bad "2 region_size 4194304" "Invalid region_size: expected a power of two from 8 to 2097152 sectors"
bad "2 region_size $((S * 2))" "Region size exceeds the target length"
bad "4 region_size 8 region_size 16" "Duplicate feature argument"
bad "2 sync_all sync_all" "Duplicate feature argument"
bad "2 low_water_mark 16" "Feature of secondary mode: low_water_mark"
bad "2 metadata $L" "Metadata device must differ from the local device"
bad "2 metadata $R" "Metadata device must differ from the remote device"
bad "2 metadata /dev/nonexistent" "Error opening metadata device"
truncate -s 512 "$TMPDIR/tinymeta"
TINYMETA=$(losetup -f --show "$TMPDIR/tinymeta") || die "losetup"
bad "2 metadata $TINYMETA" "Metadata device is too small for the out-of-sync log"
losetup -d "$TINYMETA"
bad "3 sync_all" "Invalid number of feature arguments"

dmsetup create pri --table "0 $S replication primary $L $R 5 metadata /dev/ram2 region_size 2048 sync_all" ||
	die "a primary with every feature is refused"
check_eq "$(dmsetup table pri)" \
	"0 $S replication primary $(devno $L) $(devno $R) 5 metadata $(devno /dev/ram2) region_size 2048 sync_all" \
	"the canonical table prints every feature"
wait_field pri 1 running 60 || not_ok "sync_all over a zeroed remote never ends"
dmsetup remove pri

# ---- fio verify, local == remote, forwarded count ----------------------------------
dmsetup create pri --table "0 $S replication primary $L $R" || die "cannot create pri"
check_eq "$(dmsetup status pri)" "0 $S replication primary running 0 0 0/$NREG" "new primary status"
dd if=/dev/urandom of=$P bs=4k count=100 oflag=direct status=none || not_ok "dd to pri"
check_eq "$(field pri 3)" 100 "100 writes forwarded"
if fio --name=pv --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bssplit=4k/50:16k/25:512/15:64k/10 --size=16M \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --fsync=64 \
	--output="$TMPDIR/fio1.out"; then
	ok "fio verify on the primary"
else
	not_ok "fio verify: $(grep -iE 'verify|err' "$TMPDIR/fio1.out" | head -5)"
fi
same $L $R && ok "local == remote after fio" || not_ok "local and remote differ after fio"
fw=$(field pri 3)
[ "$fw" -gt 100 ] && ok "fio's writes were forwarded ($fw)" || not_ok "forwarded: $fw"
check_eq "$(field pri 1) $(field pri 2) $(field pri 4)" "running 0 0/$NREG" "still running, in sync"
$MSG pri checkpoint && ok "checkpoint while running" || not_ok "checkpoint while running failed"
expect_msg_error pri "sync_rate" "Message takes one argument"
expect_msg_error pri "sync_rate fast" "Invalid sync_rate: expected KiB/s, 0 for unlimited"
expect_msg_error pri "checkpoint now" "Message takes no arguments"
expect_msg_error pri "failover" "Unrecognised message"
$MSG pri sync_rate 1000 && ok "sync_rate 1000" || not_ok "sync_rate refused"

# ---- remote failure in the middle of a fio job ---------------------------------------
# fail_mid_job KIND: fio runs; once writes are being forwarded the remote
# fails; the job must end without error, the primary degraded.
fail_mid_job() {
	local kind=$1 fw0 i pid rc
	fw0=$(field pri 3)
	fio --name=pf --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --size=32M --time_based --runtime=5 \
		--output="$TMPDIR/fio-$kind.out" &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		[ "$(field pri 3)" -gt $((fw0 + 500)) ] && break
		sleep 0.05
	done
	set_remote "$kind" || not_ok "$kind: cannot swap the remote"
	wait_field pri 1 degraded 30 && ok "$kind: degraded while fio runs" ||
		not_ok "$kind: not degraded: $(dmsetup status pri)"
	wait $pid
	rc=$?
	if [ $rc -eq 0 ] && ! grep -qE 'err= *[1-9]' "$TMPDIR/fio-$kind.out"; then
		ok "$kind: the fio job saw no error"
	else
		not_ok "$kind: fio failed ($rc): $(grep -E 'err= *[1-9]' "$TMPDIR/fio-$kind.out" | head -3)"
	fi
	check_eq "$(field pri 2)" 5 "$kind: status records the error"
	expect_msg_error pri checkpoint "checkpoint failed: degraded, remote error 5"
	same $P $L && ok "$kind: primary reads equal local" || not_ok "$kind: primary reads differ from local"
	oos=$(field pri 4)
	[ "${oos%/*}" -gt 0 ] && ok "$kind: regions out of sync: $oos" || not_ok "$kind: out of sync: $oos"
}

fail_mid_job flakey
# Nothing more is forwarded: a healthy remote under the degraded primary
# receives no write, and the forwarded count stays.
set_remote linear
fw=$(field pri 3)
cp_remote=$(sum $R)
dd if=/dev/urandom of=$P bs=4k count=64 oflag=direct status=none || not_ok "dd while degraded"
check_eq "$(field pri 3)" "$fw" "degraded: the forwarded count stays"
check_eq "$(sum $R)" "$cp_remote" "degraded: nothing reaches the remote"
dmsetup remove pri

# The same with dm-error, and the out-of-sync regions counted exactly.
dd if=$L of=$R bs=1M iflag=direct oflag=direct status=none
dmsetup create pri --table "0 $S replication primary $L $R" || die "cannot create pri"
fail_mid_job error
dmsetup remove pri
set_remote linear
dd if=$L of=$R bs=1M iflag=direct oflag=direct status=none
dmsetup create pri --table "0 $S replication primary $L $R" || die "cannot create pri"
set_remote error
dd if=/dev/urandom of=$P bs=4k count=1 seek=$((5 * 128)) oflag=direct status=none ||
	not_ok "a write with a failed remote fails"
check_eq "$(field pri 1) $(field pri 2) $(field pri 4)" "degraded 5 1/$NREG" \
	"the write's region is out of sync"
for r in 7 9 5 9; do
	dd if=/dev/urandom of=$P bs=4k count=1 seek=$((r * 128 + 3)) oflag=direct status=none
done
check_eq "$(field pri 4)" "3/$NREG" "every region written since is out of sync, once"
$MSG pri sync_rate 0 && ok "sync_rate while degraded" || not_ok "sync_rate while degraded"
$MSG pri stop && ok "stop while degraded" || not_ok "stop while degraded"
check_eq "$(field pri 1)" done "stop: done"
dmsetup remove pri

# ---- stop from running --------------------------------------------------------------
set_remote linear
dd if=$L of=$R bs=1M iflag=direct oflag=direct status=none
dmsetup create pri --table "0 $S replication primary $L $R" || die "cannot create pri"
dd if=/dev/urandom of=$P bs=4k count=8 oflag=direct status=none
$MSG pri stop && ok "stop while running" || not_ok "stop while running"
check_eq "$(field pri 1) $(field pri 2)" "done 0" "stop: done, no error"
cp_remote=$(sum $R)
dd if=/dev/urandom of=$P bs=4k count=1 seek=$((3 * 128)) oflag=direct status=none &&
	dd if=/dev/urandom of=$P bs=4k count=1 seek=$((11 * 128)) oflag=direct status=none ||
	not_ok "local writes go on after stop"
check_eq "$(sum $R)" "$cp_remote" "after stop nothing reaches the remote"
check_eq "$(field pri 4)" "2/$NREG" "regions written after stop are out of sync"
same $P $L && ok "after stop the primary reads local" || not_ok "after stop reads differ"
expect_msg_error pri checkpoint "checkpoint failed: done"
$MSG pri stop && ok "stop again succeeds" || not_ok "stop again"
dmsetup remove pri

# ---- flushes and FUA reach both devices --------------------------------------------
# On virtio disks with a volatile write cache the block layer passes flushes
# on (brd has none, and drops them), and counts them in the disk's stat.
set -- $DISKS
VA=${1#/dev/} VB=${2#/dev/}
flushes() { awk '{print $16}' "/sys/block/$1/stat"; }
if [ "$(cat /sys/block/$VA/queue/write_cache)" = "write back" ] &&
	[ -n "$(flushes $VA)" ]; then
	dmsetup create pri --table "0 $S replication primary /dev/$VA /dev/$VB" ||
		die "cannot create pri on the virtio disks"
	a0=$(flushes $VA) b0=$(flushes $VB)
	dd if=/dev/urandom of=$P bs=4k count=1 oflag=direct conv=fsync status=none
	a1=$(flushes $VA) b1=$(flushes $VB)
	[ "$a1" -gt "$a0" ] && [ "$b1" -gt "$b0" ] &&
		ok "a flush reaches local and remote ($a0->$a1, $b0->$b1)" ||
		not_ok "flushes: local $a0->$a1, remote $b0->$b1"
	# Without FUA in the disk, the block layer makes a FUA write a write
	# and a flush: counted too.
	if [ "$(cat /sys/block/$VA/queue/fua)" = 0 ]; then
		dd if=/dev/urandom of=$P bs=4k count=1 oflag=direct,dsync status=none
		a2=$(flushes $VA) b2=$(flushes $VB)
		[ "$a2" -gt "$a1" ] && [ "$b2" -gt "$b1" ] &&
			ok "a FUA write reaches local and remote ($a1->$a2, $b1->$b2)" ||
			not_ok "FUA: local $a1->$a2, remote $b1->$b2"
	fi
	dmsetup remove pri
else
	echo "# the virtio disks have no write cache: flushes not checked"
fi

dmsetup remove premote
dmsetup remove plocal
finish
