// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the stores' on-disk format.
 *
 * Pure functions on the format of dm-replication-format.h: a store device's
 * layout, and the encoding, decoding and checking of its header copies and
 * records.  The stores (dm-replication-cow.c) read and write the disk; the
 * session's loading decides with dmr_headers_reconcile().  It calls nothing
 * of the module.
 */
#include <linux/crc32c.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/string.h>

#include "dm-replication.h"
#include "dm-replication-cow.h"
#include "dm-replication-format.h"
#include "dm-replication-test.h"

static_assert(sizeof(struct dmr_disk_header) == SECTOR_SIZE);
static_assert(sizeof(struct dmr_disk_record) == DMR_RECORD_SIZE);

/* ---------------------------------------------------------------------------
 * Geometry.
 */

static bool dmr_chunk_size_valid(u32 chunk_sectors)
{
	return is_power_of_2(chunk_sectors) &&
	       chunk_sectors >= DMR_MIN_CHUNK_SECTORS &&
	       chunk_sectors <= DMR_MAX_CHUNK_SECTORS;
}

static u64 dmr_meta_blocks(u64 nr_slots)
{
	return DIV_ROUND_UP_ULL(nr_slots, DMR_RECORDS_PER_BLOCK);
}

static u64 dmr_data_start(u64 nr_slots, u32 chunk_sectors)
{
	u64 end = DMR_HEADER_SECTORS +
		  dmr_meta_blocks(nr_slots) * DMR_META_BLOCK_SECTORS;

	return round_up(end, (u64)chunk_sectors);
}

/**
 * dmr_layout_init() - lay out a store device
 * @l: filled with the layout
 * @dev_sectors: size of the store device
 * @chunk_sectors: chunk size, a valid one
 *
 * Gives the store as many data slots as fit after the header and the
 * metadata they need, at most %DMR_MAX_SLOTS.
 */
void dmr_layout_init(struct dmr_layout *l, u64 dev_sectors, u32 chunk_sectors)
{
	u64 n = 0;

	if (dev_sectors > DMR_HEADER_SECTORS)
		n = (dev_sectors - DMR_HEADER_SECTORS) >> ilog2(chunk_sectors);
	n = min_t(u64, n, DMR_MAX_SLOTS);

	/* Each step only shrinks n; two or three steps settle it. */
	while (n && dmr_data_start(n, chunk_sectors) +
		    (n << ilog2(chunk_sectors)) > dev_sectors) {
		u64 start = dmr_data_start(n, chunk_sectors);

		n = start >= dev_sectors ? 0 :
		    min(n - 1, (dev_sectors - start) >> ilog2(chunk_sectors));
	}

	l->nr_slots = n;
	l->meta_start = DMR_HEADER_SECTORS;
	l->meta_blocks = dmr_meta_blocks(n);
	l->data_start = dmr_data_start(n, chunk_sectors);
}

/**
 * dmr_store_capacity() - how many data chunks a COW store device holds
 * @dev_sectors: size of the store device in 512-byte sectors
 * @chunk_sectors: chunk size in sectors, a valid one
 *
 * Return: the number of data slots of the store's layout, 0 if none fit.
 */
sector_t dmr_store_capacity(sector_t dev_sectors, sector_t chunk_sectors)
{
	struct dmr_layout l;

	dmr_layout_init(&l, dev_sectors, chunk_sectors);
	return l.nr_slots;
}

/* ---------------------------------------------------------------------------
 * Headers.
 */

static u32 dmr_header_csum(const struct dmr_disk_header *d)
{
	return crc32c(~0U, (const u8 *)d + sizeof(d->csum),
		      sizeof(*d) - sizeof(d->csum));
}

/**
 * dmr_header_encode() - encode a header for the disk
 * @h: the header
 * @d: the 512-byte on-disk form, checksummed
 */
void dmr_header_encode(const struct dmr_header *h, struct dmr_disk_header *d)
{
	memset(d, 0, sizeof(*d));
	d->magic = cpu_to_le32(DMR_MAGIC);
	d->version = cpu_to_le32(DMR_VERSION);
	d->role = cpu_to_le32(h->role);
	d->seq = cpu_to_le64(h->seq);
	d->epoch = cpu_to_le64(h->epoch);
	memcpy(d->uuid, h->uuid, DMR_UUID_SIZE);
	d->state = cpu_to_le32(h->state);
	d->chunk_sectors = cpu_to_le32(h->chunk_sectors);
	d->secondary_sectors = cpu_to_le64(h->secondary_sectors);
	d->nr_slots = cpu_to_le64(h->layout.nr_slots);
	d->meta_start = cpu_to_le64(h->layout.meta_start);
	d->data_start = cpu_to_le64(h->layout.data_start);
	d->commit_cursor = cpu_to_le64(h->commit_cursor);
	d->csum = cpu_to_le32(dmr_header_csum(d));
}

static bool dmr_layout_valid(const struct dmr_layout *l, u32 chunk_sectors)
{
	return l->nr_slots && l->nr_slots <= DMR_MAX_SLOTS &&
	       l->meta_start == DMR_HEADER_SECTORS &&
	       l->data_start == dmr_data_start(l->nr_slots, chunk_sectors);
}

/* Chunks of a target of @sectors, without overflowing near U64_MAX. */
static u64 dmr_nr_chunks(u64 sectors, u32 chunk_sectors)
{
	return (sectors >> ilog2(chunk_sectors)) +
	       !!(sectors & (chunk_sectors - 1));
}

/**
 * dmr_header_decode() - decode and validate one on-disk header copy
 * @d: the 512-byte on-disk form
 * @h: filled with the header on success
 * @error: set to the reason on failure
 *
 * Return: 0 for a valid header, -EINVAL with @error set otherwise.
 */
int dmr_header_decode(const struct dmr_disk_header *d, struct dmr_header *h,
		      char **error)
{
	if (le32_to_cpu(d->magic) != DMR_MAGIC) {
		*error = "Store header has a wrong magic: not a dm-replication store";
		return -EINVAL;
	}
	if (le32_to_cpu(d->csum) != dmr_header_csum(d)) {
		*error = "Store header has a bad checksum";
		return -EINVAL;
	}
	if (le32_to_cpu(d->version) != DMR_VERSION) {
		*error = "Store header has an unsupported version";
		return -EINVAL;
	}

	memset(h, 0, sizeof(*h));
	h->role = le32_to_cpu(d->role);
	h->seq = le64_to_cpu(d->seq);
	h->epoch = le64_to_cpu(d->epoch);
	memcpy(h->uuid, d->uuid, DMR_UUID_SIZE);
	h->state = le32_to_cpu(d->state);
	h->chunk_sectors = le32_to_cpu(d->chunk_sectors);
	h->secondary_sectors = le64_to_cpu(d->secondary_sectors);
	h->layout.nr_slots = le64_to_cpu(d->nr_slots);
	h->layout.meta_start = le64_to_cpu(d->meta_start);
	h->layout.data_start = le64_to_cpu(d->data_start);
	h->layout.meta_blocks = dmr_meta_blocks(h->layout.nr_slots);
	h->commit_cursor = le64_to_cpu(d->commit_cursor);

	if (h->role != DMR_ROLE_HIDDEN && h->role != DMR_ROLE_ACTIVE) {
		*error = "Store header has an unknown role";
		return -EINVAL;
	}
	if ((unsigned int)h->state >= DMR_NR_STATES) {
		*error = "Store header has an unknown state";
		return -EINVAL;
	}
	if (!h->seq || !h->epoch) {
		*error = "Store header has a zero generation or epoch";
		return -EINVAL;
	}
	if (h->seq == U64_MAX) {
		/* The next generation would wrap to the invalid 0. */
		*error = "Store header has an exhausted generation";
		return -EINVAL;
	}
	if (!dmr_chunk_size_valid(h->chunk_sectors)) {
		*error = "Store header has an invalid chunk size";
		return -EINVAL;
	}
	if (!dmr_layout_valid(&h->layout, h->chunk_sectors)) {
		*error = "Store header has an invalid layout";
		return -EINVAL;
	}
	if (h->commit_cursor > dmr_nr_chunks(h->secondary_sectors,
					     h->chunk_sectors)) {
		*error = "Store header has a commit cursor past the target's end";
		return -EINVAL;
	}
	return 0;
}

/**
 * dmr_header_pick() - find a store's current header in its first 4 KiB
 * @area: the first %DMR_HEADER_SECTORS sectors of the store
 * @h: filled with the newer valid header copy
 * @error: set to the reason when neither copy is valid
 *
 * A header update writes one copy, so after a crash one copy may be torn;
 * the other still holds the previous header.
 *
 * Return: 0 with @h set, 1 for a blank (all-zero) area, or -EINVAL with
 * @error set when the area holds something else.
 */
int dmr_header_pick(const void *area, struct dmr_header *h, char **error)
{
	const struct dmr_disk_header *d = area;
	struct dmr_header a, b;
	char *error_b;
	int ra, rb;

	if (!memchr_inv(area, 0, DMR_HEADER_SECTORS << SECTOR_SHIFT))
		return 1;

	ra = dmr_header_decode(&d[0], &a, error);
	rb = dmr_header_decode(&d[1], &b, &error_b);
	if (!ra && (rb || a.seq >= b.seq)) {
		*h = a;
		return 0;
	}
	if (!rb) {
		*h = b;
		return 0;
	}
	/* Copy A is written first in a store's life: its reason is the one. */
	if (!memchr_inv(&d[0], 0, sizeof(d[0])))
		*error = error_b;
	return -EINVAL;
}

/**
 * dmr_header_check() - check a valid header against the table
 * @h: the header
 * @role: the store the table says the device is
 * @chunk_sectors: the table's chunk size
 * @secondary_sectors: the table's length
 * @dev_sectors: the store device's size
 * @error: set to the reason on failure
 *
 * Return: 0 when the header belongs to this table, -EINVAL otherwise.
 */
int dmr_header_check(const struct dmr_header *h, enum dmr_role role,
		     u32 chunk_sectors, u64 secondary_sectors, u64 dev_sectors,
		     char **error)
{
	bool hidden = role == DMR_ROLE_HIDDEN;

	if (h->role != role) {
		*error = hidden ? "Hidden device holds an active store: devices swapped?" :
				  "Active device holds a hidden store: devices swapped?";
		return -EINVAL;
	}
	if (h->chunk_sectors != chunk_sectors) {
		*error = hidden ? "Hidden store was made with another chunk size" :
				  "Active store was made with another chunk size";
		return -EINVAL;
	}
	if (h->secondary_sectors != secondary_sectors) {
		*error = hidden ? "Hidden store was made for another target length" :
				  "Active store was made for another target length";
		return -EINVAL;
	}
	if (h->layout.data_start +
	    (h->layout.nr_slots << ilog2(h->chunk_sectors)) > dev_sectors) {
		*error = hidden ? "Hidden device is smaller than its store's header says" :
				  "Active device is smaller than its store's header says";
		return -EINVAL;
	}
	return 0;
}

/**
 * dmr_headers_reconcile() - decide how to load a session from its two stores
 * @hidden_rc: dmr_header_pick()'s result for hidden: 0 valid or 1 blank
 * @hidden: hidden's header when valid
 * @active_rc: the same for active
 * @active: active's header when valid
 * @action: set to what loading must do
 * @error: set to the reason on failure
 *
 * Both blank is a new session.  One blank and the other never used (its
 * first generation) is a format that a crash interrupted.  Both valid must be
 * the same session; the newer generation holds the session's state.
 *
 * Return: 0 with @action set, -EINVAL with @error set otherwise.
 */
int dmr_headers_reconcile(int hidden_rc, const struct dmr_header *hidden,
			  int active_rc, const struct dmr_header *active,
			  enum dmr_load_action *action, char **error)
{
	if (hidden_rc && active_rc) {
		*action = DMR_LOAD_FORMAT;
		return 0;
	}
	if (hidden_rc) {
		if (active->seq != 1) {
			*error =
				"Hidden store is blank, active is not: zero both to start anew";
			return -EINVAL;
		}
		*action = DMR_LOAD_FINISH_FORMAT;
		return 0;
	}
	if (active_rc) {
		if (hidden->seq != 1) {
			*error =
				"Active store is blank, hidden is not: zero both to start anew";
			return -EINVAL;
		}
		*action = DMR_LOAD_FINISH_FORMAT;
		return 0;
	}
	if (memcmp(hidden->uuid, active->uuid, DMR_UUID_SIZE)) {
		*error = "Hidden and active stores belong to different sessions";
		return -EINVAL;
	}
	if (hidden->seq == active->seq &&
	    (hidden->epoch != active->epoch || hidden->state != active->state)) {
		*error = "Hidden and active stores disagree at the same generation";
		return -EINVAL;
	}
	*action = DMR_LOAD_RESUME;
	return 0;
}

/**
 * dmr_record_live() - is a metadata record a mapping of this epoch?
 * @r: the record
 * @epoch: the store's epoch
 * @nr_chunks: chunks of the secondary device; a live record maps one of them
 * @chunk: set to the record's chunk when live
 *
 * Return: true when the record is live.
 */
bool dmr_record_live(const struct dmr_disk_record *r, u64 epoch,
		     u64 nr_chunks, u32 *chunk)
{
	u64 c = le64_to_cpu(r->chunk);

	if (le64_to_cpu(r->epoch) != epoch || c >= nr_chunks)
		return false;
	*chunk = c;
	return true;
}

