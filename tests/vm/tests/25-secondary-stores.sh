#!/bin/bash
# timeout: 500
#
# The stores: ENOSPC on a full active or hidden store (recorded for hidden),
# the low_water_mark event, every rejected header (with its error and with
# nothing written), and persistence across suspend/resume, reload, and
# remove/create.
. "$REPO/tests/vm/lib.sh"

ram_disks 4 16
SEC=/dev/ram0 BIG_H=/dev/ram1 BIG_A=/dev/ram2 SPARE=/dev/ram3
S=$(dev_sectors $SEC)
trap 'dm_remove_all' EXIT

fill() { head -c $(($2 * 4096)) /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }
put() { fill "$3" 1 | dd of="$1" bs=4096 seek="$2" oflag=direct conv=notrunc status=none; }
get() { dd if="$1" bs=4096 skip="$2" count=1 iflag=direct status=none | sha1sum | cut -c1-40; }
want() { fill "$1" 1 | sha1sum | cut -c1-40; }
head4k() { dd if="$1" bs=4096 count=1 status=none | sha1sum | cut -c1-40; }
blank() { dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct status=none; }
top_table() { echo "0 ${3:-$S} replication secondary $SEC $1 $2 ${4:-8}${5:+ $5}"; }

fill 17 $((S / 8)) | dd of=$SEC bs=1M oflag=direct status=none

# ---- full stores: 4 data chunks each (16 header+record sectors + 4 x 8) ----
dmsetup create small_h --table "0 48 linear $BIG_H 0" || die "linear"
dmsetup create small_a --table "0 48 linear $BIG_A 0" || die "linear"
H=/dev/mapper/small_h A=/dev/mapper/small_a
blank $H; blank $A
dmsetup create top --table "$(top_table $H $A $S 8 '2 low_water_mark 2')" || die "top"
dmsetup create port --table "0 $S replication port $SEC" || die "port"
TOP=/dev/mapper/top PORT=/dev/mapper/port
check_eq "$(field top 3)" "0/4" "active holds 4 chunks"

ev=$(dmsetup info -c --noheadings -o events top)
put $TOP 0 34; put $TOP 1 34
check_eq "$(dmsetup info -c --noheadings -o events top)" "$ev" \
	"no event while 2 chunks are free"
put $TOP 2 34
if timeout 20 dmsetup wait top "$ev" >/dev/null; then
	ok "low_water_mark: an event when free chunks drop below 2"
else
	not_ok "low_water_mark: no event within 20 s"
fi
put $TOP 3 34
refused "top write needing a fifth chunk fails (ENOSPC)" put $TOP 4 34
check_eq "$(get $TOP 4)" "$(want 17)" "the refused chunk still reads the old data"
put $TOP 3 51
check_eq "$(get $TOP 3)" "$(want 51)" "rewriting a chunk in a full store works"
check_eq "$(field top 2)" 0 "a full active store is not a replication error"

for c in 10 11 12 13; do put $PORT $c 68; done
refused "port write needing a fifth copy fails (ENOSPC)" put $PORT 14 68
check_eq "$(field top 2)" 28 "hidden full: ENOSPC (28) is recorded in status"
check_eq "$(get $PORT 14)" "$(want 17)" "the refused port write left the secondary device alone"
check_eq "$(get $TOP 13)" "$(want 17)" "top keeps the old data of copied chunks"
put $PORT 13 85
check_eq "$(get $PORT 13)" "$(want 85)" "rewriting a copied chunk needs no space"

dmsetup message top 0 checkpoint || not_ok "checkpoint"
check_eq "$(field top 2)" 0 "checkpoint clears the error"
check_eq "$(get $TOP 13)" "$(want 85)" "after the checkpoint the top sees the port's writes"
put $PORT 14 68 && put $TOP 4 34 || not_ok "space is back after the checkpoint"
check_eq "$(get $TOP 14)" "$(want 17)" "a new port write is hidden from the top again"
dmsetup remove port; dmsetup remove top

# ---- persistence: suspend/resume, reload, remove/create -----------------------
blank $BIG_H; blank $BIG_A
dmsetup create top --table "$(top_table $BIG_H $BIG_A)" || die "top"
dmsetup create port --table "0 $S replication port $SEC" || die "port"
put $TOP 5 102; put $PORT 6 119
dmsetup suspend top && dmsetup resume top || not_ok "suspend/resume"
check_eq "$(get $TOP 5)" "$(want 102)" "suspend/resume keeps a top write"
dmsetup reload top --table "$(top_table $BIG_H $BIG_A)" && dmsetup resume top ||
	not_ok "reload of the same table"
check_eq "$(get $TOP 5)" "$(want 102)" "reload keeps a top write"
check_eq "$(get $TOP 6)" "$(want 17)" "reload keeps the hidden copy"
kmsg_mark
if dmsetup reload top --table "$(top_table $BIG_H $BIG_A $S 16)" 2>/dev/null; then
	not_ok "reload with another chunk size accepted"
	dmsetup clear top
elif kmsg_since | grep -qF "Cannot change the stores or chunk size of a loaded session"; then
	ok "reload with another chunk size is refused"
else
	not_ok "reload with another chunk size: no reason logged"
fi
dmsetup remove port && dmsetup remove top || not_ok "remove"
dmsetup create top --table "$(top_table $BIG_H $BIG_A)" || not_ok "create again"
check_eq "$(get $TOP 5)" "$(want 102)" "remove/create keeps a top write"
check_eq "$(get $TOP 6)" "$(want 17)" "remove/create keeps the hidden copy"
check_eq "$(field top 3 | cut -d/ -f1)" 1 "active still holds one chunk"
check_eq "$(field top 4 | cut -d/ -f1)" 1 "hidden still holds one chunk"
dmsetup message top 0 checkpoint || not_ok "checkpoint"
dmsetup remove top

# ---- rejected headers: each with its reason, and nothing written ----------------
# reject NAME TABLE REASON: the create fails with REASON; both stores unchanged.
reject() {
	local h=$1 a=$2 table=$3 why=$4 bh ba
	bh=$(dd if="$h" bs=1M count=1 status=none | sha1sum)
	ba=$(dd if="$a" bs=1M count=1 status=none | sha1sum)
	expect_ctr_error bad "$table" "$why"
	[ "$bh$ba" = "$(dd if="$h" bs=1M count=1 status=none | sha1sum)$(dd if="$a" bs=1M count=1 status=none | sha1sum)" ] &&
		ok "nothing written after: $why" ||
		not_ok "a store changed although the table was refused: $why"
}

# The session on BIG_H/BIG_A is in use (a checkpoint moved it past seq 1).
reject $BIG_H $BIG_A "$(top_table $BIG_H $BIG_A $S 16)" \
	"Hidden store was made with another chunk size"
reject $BIG_H $BIG_A "$(top_table $BIG_H $BIG_A $((S - 8)))" \
	"Hidden store was made for another target length"
reject $BIG_H $BIG_A "$(top_table $BIG_A $BIG_H)" \
	"Hidden device holds an active store: devices swapped?"

cp_dev() { dd if="$1" of="$2" bs=1M oflag=direct status=none; }
cp_dev $BIG_A $SPARE
blank $SPARE
reject $BIG_H $SPARE "$(top_table $BIG_H $SPARE)" \
	"Active store is blank, hidden is not: zero both to start anew"

dd if=/dev/urandom of=$SPARE bs=4096 count=1 oflag=direct status=none
reject $BIG_H $SPARE "$(top_table $BIG_H $SPARE)" \
	"Store header has a wrong magic: not a dm-replication store"

# Flip a byte inside both header copies of active: bad checksum.  Offset 40
# is in the session's random uuid: invert its bits (writing 0xff there left
# the header valid once in 256 runs), through the page cache and then synced.
flip_byte() {
	python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0xff]), off)
os.fsync(fd)' "$1" "$2"
}
cp_dev $BIG_A $SPARE
for off in 40 552; do
	flip_byte $SPARE $off || die "cannot flip byte $off of $SPARE"
done
reject $BIG_H $SPARE "$(top_table $BIG_H $SPARE)" "Store header has a bad checksum"

# A second session on two slices of SPARE: mixing two sessions is refused.
dmsetup create x1 --table "0 16384 linear $SPARE 0" &&
	dmsetup create x2 --table "0 16384 linear $SPARE 16384" || die "linear"
X1=/dev/mapper/x1 X2=/dev/mapper/x2
blank $X1; blank $X2
dmsetup create s2 --table "$(top_table $X1 $X2)" || not_ok "a second session"
dmsetup message s2 0 checkpoint || not_ok "checkpoint of the second session"
dmsetup remove s2
reject $BIG_H $X2 "$(top_table $BIG_H $X2)" \
	"Hidden and active stores belong to different sessions"

# And the session itself is still fine.
dmsetup create top --table "$(top_table $BIG_H $BIG_A)" ||
	not_ok "the good session loads after all the refusals"
finish
