#!/bin/bash
# timeout: 300
# kernels: 6.12
# (6.12 only: it checks our own parsing and cell logic, the same source on
# every kernel; 6.1 keeps the tests where the kernels can differ.)
#
# Every mode's table is parsed as the contract says: each malformed table is
# refused with its own ti->error and leaves nothing behind; each bad message
# fails with a log line; valid tables load and print their canonical table and
# status; I/O works; a port without its secondary reads but refuses writes.
. "$REPO/tests/vm/lib.sh"

ram_disks 4 64
SEC=/dev/ram0 HID=/dev/ram1 ACT=/dev/ram2 OTHER=/dev/ram3
S=$(dev_sectors $SEC)
truncate -s 4096 "$TMPDIR/tiny"
TINY=$(losetup -f --show "$TMPDIR/tiny") || die "losetup"
trap 'dm_remove_all; losetup -d "$TINY" 2>/dev/null' EXIT

bad() { expect_ctr_error bad "0 $S replication $1" "$2"; }

# ---- mode -------------------------------------------------------------------
expect_ctr_error bad "0 $S replication" \
	"Missing mode: expected secondary, primary or port"
bad "mirror $SEC $HID" "Unknown mode: expected secondary, primary or port"
bad "SECONDARY $SEC $HID $ACT 8" "Unknown mode: expected secondary, primary or port"

# ---- secondary --------------------------------------------------------------
NEED4="Not enough arguments: need <secondary> <hidden> <active> <chunk size>"
bad "secondary" "$NEED4"
bad "secondary $SEC $HID $ACT" "$NEED4"
bad "secondary /dev/nonexistent $HID $ACT 8" "Error opening secondary device"
bad "secondary $SEC /dev/nonexistent $ACT 8" "Error opening hidden device"
bad "secondary $SEC $HID /dev/nonexistent 8" "Error opening active device"
bad "secondary $SEC $SEC $ACT 8" "Hidden device must differ from the secondary device"
bad "secondary $SEC $HID $SEC 8" "Active device must differ from the secondary device"
bad "secondary $SEC $HID $HID 8" "Active device must differ from the hidden device"
bad "secondary $SEC $(devno $SEC) $ACT 8" "Hidden device must differ from the secondary device"
expect_ctr_error bad "0 $((S + 8)) replication secondary $SEC $HID $ACT 8" \
	"Target length exceeds the secondary device"
bad "secondary $SEC $HID $ACT abc" "Invalid chunk size: not a number"
bad "secondary $SEC $HID $ACT 12" "Invalid chunk size: not a power of two"
bad "secondary $SEC $HID $ACT 0" "Invalid chunk size: not a power of two"
bad "secondary $SEC $HID $ACT 4" "Invalid chunk size: must be 8 to 2048 sectors"
bad "secondary $SEC $HID $ACT 4096" "Invalid chunk size: must be 8 to 2048 sectors"
bad "secondary $SEC $HID $ACT 8 1 bogus" "Unrecognised feature argument"
bad "secondary $SEC $HID $ACT 8 3 low_water_mark 1 x" "Unrecognised feature argument"
bad "secondary $SEC $HID $ACT 8 5 low_water_mark 1 port_copy_chunks 2 x" "Invalid number of feature arguments"
bad "secondary $SEC $HID $ACT 8 4 low_water_mark 1 low_water_mark 2" "Duplicate feature argument"
bad "secondary $SEC $HID $ACT 8 2 port_copy_chunks 3" \
	"Invalid port_copy_chunks: expected a power of two from 1 to 256"
bad "secondary $SEC $HID $ACT 8 2 port_copy_chunks 512" \
	"Invalid port_copy_chunks: expected a power of two from 1 to 256"
bad "secondary $SEC $HID $ACT 8 x" "Invalid number of feature arguments"
bad "secondary $SEC $HID $ACT 8 2 low_water_mark" "Invalid number of feature arguments"
bad "secondary $SEC $HID $ACT 8 2 low_water_mark x" "Invalid low_water_mark: not a number"
bad "secondary $SEC $HID $ACT 8 1 low_water_mark" "Feature low_water_mark needs a value"
bad "secondary $SEC $HID $ACT 8 0 extra" "Too many arguments"
bad "secondary $SEC $TINY $ACT 8" "Hidden device is too small to hold a chunk"
bad "secondary $SEC $HID $TINY 8" "Active device is too small to hold a chunk"

# ---- primary ----------------------------------------------------------------
bad "primary" "Not enough arguments: need <local> <remote>"
bad "primary $SEC" "Not enough arguments: need <local> <remote>"
bad "primary /dev/nonexistent $OTHER" "Error opening local device"
bad "primary $SEC /dev/nonexistent" "Error opening remote device"
bad "primary $SEC $SEC" "Remote device must differ from the local device"
expect_ctr_error bad "0 $((S + 8)) replication primary $SEC $OTHER" \
	"Target length exceeds the local device"
bad "primary $SEC $TINY" "Target length exceeds the remote device"
bad "primary $SEC $OTHER 1 sync" "Unrecognised feature argument"
bad "primary $SEC $OTHER 0 junk" "Too many arguments"

# ---- port ---------------------------------------------------------------------
bad "port" "Not enough arguments: need <secondary>"
bad "port $SEC $HID" "Too many arguments: port takes only <secondary>"
bad "port /dev/nonexistent" "Error opening secondary device"
bad "port $SEC" "No replication secondary is loaded over this secondary device"

# ---- valid tables -------------------------------------------------------------
# A store's data slots: what fits after the headers, the records and alignment.
CAP=$(python3 -c '
import sys
dev, chunk = int(sys.argv[1]), 8
n = (dev - 8) // chunk
def start(n): return -(-(8 + -(-n // 256) * 8) // chunk) * chunk
while n and start(n) + n * chunk > dev: n -= 1
print(n)' "$(dev_sectors $HID)")
dmsetup create top --table "0 $S replication secondary $SEC $HID $ACT 8" ||
	die "valid secondary table refused"
check_eq "$(dmsetup table top)" \
	"0 $S replication secondary $(devno $SEC) $(devno $HID) $(devno $ACT) 8 0" \
	"secondary prints its canonical table"
check_eq "$(dmsetup status top)" \
	"0 $S replication secondary running 0 0/$CAP 0/$CAP 0 0" \
	"secondary status has the contract's fields"

expect_ctr_error port "0 $((S + 8)) replication port $SEC" \
	"Target length exceeds the secondary device"
expect_ctr_error other "0 $S replication secondary $SEC $OTHER $ACT 8" \
	"Secondary device is already used by another replication secondary"

dmsetup create port --table "0 $S replication port $SEC" ||
	not_ok "port refused although its secondary is loaded"
check_eq "$(dmsetup table port)" "0 $S replication port $(devno $SEC)" \
	"port prints its canonical table"
check_eq "$(dmsetup status port)" "0 $S replication port running 0" \
	"port status names its secondary's state"
expect_ctr_error port2 "0 $S replication port $SEC" \
	"Secondary device already has a port"

# A port table may not be loaded into the secondary's own device.
kmsg_mark
if dmsetup reload top --table "0 $S replication port $SEC" 2>/dev/null; then
	not_ok "a port table was loaded into the top device"
elif kmsg_since | grep -qF "Port and secondary must be different devices"; then
	ok "reload of top with a port table is refused"
else
	not_ok "reload of top with a port table: no reason logged"
fi

# Reload of the same top with features, then resume: the session carries over.
dmsetup reload top --table "0 $S replication secondary $SEC $HID $ACT 8 4 port_copy_chunks 16 low_water_mark 16" ||
	not_ok "reload of top refused"
dmsetup resume top || not_ok "resume after reload"
check_eq "$(dmsetup table top)" \
	"0 $S replication secondary $(devno $SEC) $(devno $HID) $(devno $ACT) 8 4 low_water_mark 16 port_copy_chunks 16" \
	"reloaded table prints its feature arguments"
check_eq "$(dmsetup status port)" "0 $S replication port running 0" \
	"port keeps its session across the top's reload"

dmsetup create pri --table "0 $S replication primary $OTHER $TINY" 2>/dev/null &&
	not_ok "primary over a too small remote accepted"
dmsetup remove port || not_ok "remove port"
dmsetup create pri --table "0 $(dev_sectors $TINY) replication primary $OTHER $TINY" ||
	not_ok "valid primary table refused"
check_eq "$(dmsetup table pri)" \
	"0 8 replication primary $(devno $OTHER) $(devno $TINY) 0" \
	"primary prints its canonical table"
check_eq "$(dmsetup status pri)" "0 8 replication primary running 0 0 0/1" "primary status"

# ---- messages -----------------------------------------------------------------
expect_msg_error top "bogus" "Unrecognised message: bogus"
expect_msg_error top "checkpoint now" "Message takes no arguments: checkpoint"
expect_msg_error top "commit_depth" "Message needs an argument: commit_depth"
expect_msg_error top "commit_depth 0" "Invalid commit_depth: expected 1 to 64 extents: commit_depth"
expect_msg_error top "commit_depth 8 8" "Message takes one argument: commit_depth"
expect_msg_error pri "bogus" "Unrecognised message: bogus"
dmsetup create port --table "0 $S replication port $SEC" || not_ok "port again"
expect_msg_error port "stop" "port mode accepts no messages: stop"

# ---- I/O works ------------------------------------------------------------------
if dd if=/dev/mapper/top of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
	ok "the top device reads"
else
	not_ok "read from the top device failed"
fi

# ---- lifetimes: the top goes first, the port still answers -----------------------
dmsetup remove top || not_ok "remove top while the port exists"
check_eq "$(dmsetup status port)" "0 $S replication port unloaded 0" \
	"port status after its secondary was removed: stores unloaded"
refused "port refuses writes without a secondary" \
	dd if=/dev/zero of=/dev/mapper/port bs=4096 count=1 oflag=direct
dd if=/dev/mapper/port of=/dev/null bs=4096 count=1 iflag=direct status=none ||
	not_ok "port reads pass through without a secondary"
dmsetup remove port || not_ok "remove port"
dmsetup remove pri || not_ok "remove primary"
bad "port $SEC" "No replication secondary is loaded over this secondary device"

finish
