/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: the on-disk format of a store (hidden or active).
 *
 * Private to the stores: dm-replication-format.c encodes and decodes it,
 * dm-replication-cow.c alone reads and writes it; and to the KUnit tests.
 * A store device holds, in 512-byte sectors:
 *
 *   0          header copy A  (written when the generation is even)
 *   1          header copy B  (written when the generation is odd)
 *   2 .. 7     zero
 *   8 ..       records: one 16-byte record per data slot, 256 a 4 KiB block
 *   data_start data: nr_slots chunks, data_start a multiple of the chunk size
 *
 * A record maps its slot to a chunk of the secondary device.  It is live when
 * its epoch equals the store's epoch; a checkpoint bumps the epoch (in both
 * stores' headers) and so drops every record at once.
 */
#ifndef DM_REPLICATION_FORMAT_H
#define DM_REPLICATION_FORMAT_H

#include <linux/bits.h>
#include <linux/types.h>

#include "dm-replication-cow.h"

#define DMR_MAGIC		0x4c504552U	/* "REPL" */
#define DMR_VERSION		1U
#define DMR_META_BLOCK_SIZE	4096U
#define DMR_META_BLOCK_SECTORS	(DMR_META_BLOCK_SIZE >> SECTOR_SHIFT)
#define DMR_RECORD_SIZE		16U
#define DMR_RECORDS_PER_BLOCK	(DMR_META_BLOCK_SIZE / DMR_RECORD_SIZE)
/* The most data slots a store has: a mapping keeps a flag in a slot's top bit. */
#define DMR_MAX_SLOTS		(BIT(31) - 1)

struct dmr_disk_header {
	__le32 csum;		/* crc32c of the rest of the 512 bytes */
	__le32 magic;
	__le32 version;
	__le32 role;
	__le64 seq;		/* generation, the same in both stores */
	__le64 epoch;		/* records of this epoch are live */
	u8 uuid[DMR_UUID_SIZE];	/* the session, the same in both stores */
	__le32 state;
	__le32 chunk_sectors;
	__le64 secondary_sectors;	/* the top device's length */
	__le64 nr_slots;
	__le64 meta_start;
	__le64 data_start;
	__le64 commit_cursor;	/* failover progress, in chunks */
	u8 reserved[416];
} __packed;

struct dmr_disk_record {
	__le64 chunk;
	__le64 epoch;
} __packed;

#endif /* DM_REPLICATION_FORMAT_H */
