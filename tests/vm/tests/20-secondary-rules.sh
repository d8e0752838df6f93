#!/bin/bash
# timeout: 400
#
# The secondary's rules on real devices (brd), one by one: reads fall through
# active, hidden and the secondary device; top writes go to active (with a
# copy-up of partial chunks); the port's first write to a chunk copies the old
# chunk into hidden, so the top still reads the old data; checkpoint empties
# both stores and the top then reads the secondary; stop ends in state done;
# status counts all of it; messages are refused where the state says so.
. "$REPO/tests/vm/lib.sh"

ram_disks 3 32
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2
S=$(dev_sectors $SEC)
CHUNK=8	# 4 KiB
trap 'dm_remove_all' EXIT

# pattern BYTE COUNT_4K: COUNT 4 KiB blocks of BYTE
pattern() { head -c $(($2 * 4096)) /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }
# put DEV OFFSET_4K BYTE [COUNT_4K]: write a pattern with O_DIRECT
put() { pattern "$3" "${4:-1}" | dd of="$1" bs=4096 seek="$2" oflag=direct conv=notrunc status=none; }
# put512 DEV OFFSET_SECTORS BYTE COUNT_SECTORS: an unaligned write
put512() { head -c $(($4 * 512)) /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" |
	dd of="$1" bs=512 seek="$2" oflag=direct conv=notrunc status=none; }
# get DEV OFFSET_SECTORS COUNT_SECTORS: sha of what a direct read returns
get() { dd if="$1" bs=512 skip="$2" count="$3" iflag=direct status=none | sha1sum | cut -c1-40; }
expect() { pattern "$1" "${2:-1}" | sha1sum | cut -c1-40; }

# The secondary device starts as 0x11 everywhere; both stores are blank.
pattern 17 $((S / 8)) | dd of=$SEC bs=1M oflag=direct status=none
dd if=/dev/zero of=$HID bs=4096 count=1 status=none
dd if=/dev/zero of=$ACT bs=4096 count=1 status=none

dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT $CHUNK" ||
	die "cannot create top"
dmsetup create port --table "0 $S replication port $SEC" || die "cannot create port"
TOP=/dev/mapper/top PORT=/dev/mapper/port

check_eq "$(field top 1)" running "a new session is running"
check_eq "$(get $TOP 0 8)" "$(expect 17)" "top reads the secondary device"

# Top writes: a full chunk, and a partial one that needs a copy-up.
put $TOP 1 34
check_eq "$(get $TOP 8 8)" "$(expect 34)" "top reads its full-chunk write"
check_eq "$(get $SEC 8 8)" "$(expect 17)" "top write leaves the secondary device alone"
put512 $TOP 17 51 2
want=$( (pattern 17 1 | head -c 512; head -c 1024 /dev/zero | tr '\0' '\063';
	pattern 17 1 | head -c 2560) | sha1sum | cut -c1-40)
check_eq "$(get $TOP 16 8)" "$want" "partial top write is merged with the chunk below"

# The port: first write to a chunk keeps its old content for the top.
put $PORT 3 68
check_eq "$(get $SEC 24 8)" "$(expect 68)" "port write reaches the secondary device"
check_eq "$(get $TOP 24 8)" "$(expect 17)" "top still reads the chunk's old content"
check_eq "$(get $PORT 24 8)" "$(expect 68)" "port reads the secondary device"
check_eq "$(dmsetup status port | awk '{print $6}')" 1 "port counts one copy before write"
put $PORT 3 85
check_eq "$(dmsetup status port | awk '{print $6}')" 1 "a rewrite needs no second copy"
check_eq "$(get $TOP 24 8)" "$(expect 17)" "top still reads the old content after a rewrite"

# A port write to a chunk the top has durably in active needs no copy; one
# whose active mapping is not committed yet does (a crash would lose that
# mapping, and the top must then read the old chunk, not the port's write).
sync $TOP	# fsync: a FLUSH commits active's mappings
put $PORT 1 102
check_eq "$(dmsetup status port | awk '{print $6}')" 1 "chunk durably in active: no copy"
check_eq "$(get $TOP 8 8)" "$(expect 34)" "top keeps its own write over the port's"
# The two writes go back to back from one process: active's periodic commit
# (every second) must not land between them, as it might between two dd runs
# on a loaded host.
python3 - "$TOP" "$PORT" <<'PY' || die "back-to-back writes failed"
import mmap, os, sys
fds = [os.open(d, os.O_WRONLY | os.O_DIRECT) for d in sys.argv[1:3]]
bufs = [mmap.mmap(-1, 4096) for _ in fds]
bufs[0].write(bytes([187]) * 4096)
bufs[1].write(bytes([204]) * 4096)
os.pwritev(fds[0], [bufs[0]], 4 * 4096)
os.pwritev(fds[1], [bufs[1]], 4 * 4096)
PY
check_eq "$(dmsetup status port | awk '{print $6}')" 2 "chunk in active, not yet committed: copied"
check_eq "$(get $TOP 32 8)" "$(expect 187)" "top keeps its uncommitted write over the port's"

# A top write over a chunk that is in hidden copies up from hidden.
put512 $TOP 24 119 1
want=$( (head -c 512 /dev/zero | tr '\0' '\167'; pattern 17 1 | head -c 3584) |
	sha1sum | cut -c1-40)
check_eq "$(get $TOP 24 8)" "$want" "copy-up takes the rest of the chunk from hidden"

check_eq "$(field top 3)" "4/$(field top 3 | cut -d/ -f2)" "four chunks used in active"
check_eq "$(field top 4 | cut -d/ -f1)" 2 "two chunks used in hidden"
check_eq "$(field top 6)" 4 "chunks to commit: active 4 + hidden-only 0"
check_eq "$(field top 2)" 0 "no error so far"

# Suspend and resume lose nothing.
dmsetup suspend top && dmsetup resume top || not_ok "suspend/resume"
check_eq "$(get $TOP 8 8)" "$(expect 34)" "data survives suspend/resume"

# Checkpoint: both stores empty, top == secondary.
dmsetup message top 0 checkpoint || not_ok "checkpoint"
check_eq "$(field top 5)" 1 "one checkpoint counted"
check_eq "$(field top 3 | cut -d/ -f1)" 0 "active is empty"
check_eq "$(field top 4 | cut -d/ -f1)" 0 "hidden is empty"
check_eq "$(field top 6)" 0 "nothing to commit"
check_eq "$(dmsetup status port | awk '{print $6}')" 0 "port's copy count restarts"
check_eq "$(get $TOP 0 $S)" "$(get $SEC 0 $S)" "after checkpoint the top reads the secondary device"

# Messages: bad ones fail with a reason (failover: 50-failover-rules).
expect_msg_error top "bogus" "Unrecognised message: bogus"

# Stop: a checkpoint, then done; the port refuses writes, reads pass.
put $TOP 5 136
dmsetup message top 0 stop || not_ok "stop"
check_eq "$(field top 1)" done "stop ends in state done"
check_eq "$(field top 5)" 2 "stop counts as a checkpoint"
check_eq "$(dmsetup status port | awk '{print $5}')" done "port reports done"
check_eq "$(get $TOP 40 8)" "$(get $SEC 40 8)" "after stop the top maps the secondary"
refused "port refuses writes after stop" put $PORT 6 153
check_eq "$(get $PORT 0 8)" "$(get $SEC 0 8)" "port still reads after stop"
put $TOP 7 170
check_eq "$(get $SEC 56 8)" "$(expect 170)" "in done the top writes the secondary device"
dmsetup message top 0 checkpoint || not_ok "checkpoint in done succeeds"
dmsetup message top 0 stop || not_ok "stop in done succeeds"
check_eq "$(field top 5)" 2 "messages in done do nothing"

# The state is durable: a new table over the same stores loads as done.
dmsetup remove port && dmsetup remove top || not_ok "remove"
dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT $CHUNK" ||
	not_ok "reload over the same stores"
check_eq "$(field top 1)" done "state done survives a table reload"

finish
