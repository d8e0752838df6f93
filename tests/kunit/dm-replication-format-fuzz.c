// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit suite dm-replication-format-fuzz: hostile metadata fed to the
 * decoders of dm-replication-format.c (issue 14).
 *
 * Random 512-byte blocks and mutated valid ones (bit flips, fields set to
 * extremes, layouts of other devices, re-checksummed so that the field checks
 * and not the checksum must refuse them) go to dmr_header_decode(),
 * dmr_header_pick(), dmr_header_check() and dmr_record_live().  Each must
 * refuse a block or return values within every bound the format documents.
 * Blocks are allocated at their exact size, so KASAN catches a read past one.
 *
 * Every case draws from its own xorshift64* generator seeded from the case's
 * number: a failure prints the seed, and fuzz_case() with that seed replays
 * the case.
 *
 * Built only into the module of make KUNIT=1, with
 * CONFIG_DM_REPLICATION_KUNIT_TEST (see tests/kunit/run).
 */
#include <kunit/test.h>
#include <linux/crc32c.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-replication.h"
#include "dm-replication-cow.h"
#include "dm-replication-format.h"
#include "dm-replication-test.h"

#define FUZZ_SEED		0x2026112514d3f0a1ULL
#define FUZZ_HEADER_RANDOM	20000U
#define FUZZ_HEADER_MUTATED	50000U
#define FUZZ_PICK		10000U
#define FUZZ_RECORD_BLOCKS	30000U
#define FUZZ_RECORDS		(SECTOR_SIZE / DMR_RECORD_SIZE)
#define FUZZ_MAX_REPORTS	10

struct fuzz {
	struct kunit *test;
	u64 seed;		/* of the current case: it replays the case */
	u64 state;
	unsigned long cases;
	unsigned long refused;
	unsigned long accepted;
	unsigned long checked;		/* dmr_header_check() calls */
	unsigned long check_accepted;
	unsigned long failures;
};

/* Fails the test, with the case's seed; reports the first few only. */
static __printf(2, 3) void fuzz_fail(struct fuzz *f, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	if (f->failures++ >= FUZZ_MAX_REPORTS)
		return;
	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	KUNIT_FAIL(f->test, "seed %#llx: %pV", f->seed, &vaf);
	va_end(args);
}

static void fuzz_init(struct fuzz *f, struct kunit *test)
{
	memset(f, 0, sizeof(*f));
	f->test = test;
}

/* Starts case @i of the test salted @salt: its seed depends on both only. */
static void fuzz_case(struct fuzz *f, u64 salt, u64 i)
{
	f->seed = FUZZ_SEED ^ salt ^ (i * 0x9e3779b97f4a7c15ULL);
	f->state = f->seed ? f->seed : 1;
	f->cases++;
}

/* xorshift64* */
static u64 fuzz_next(struct fuzz *f)
{
	u64 x = f->state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	f->state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static u64 fuzz_below(struct fuzz *f, u64 n)
{
	return n ? fuzz_next(f) % n : 0;
}

static void fuzz_fill(struct fuzz *f, void *buf, size_t len)
{
	u8 *p = buf;
	size_t i;

	for (i = 0; i < len; i += sizeof(u64)) {
		u64 x = fuzz_next(f);

		memcpy(p + i, &x, min_t(size_t, sizeof(x), len - i));
	}
}

/* A value near a boundary, or any. */
static u64 fuzz_extreme(struct fuzz *f, u64 old)
{
	switch (fuzz_below(f, 12)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return U64_MAX;
	case 3:
		return U32_MAX;
	case 4:
		return (u64)U32_MAX + 1;
	case 5:
		return S64_MAX;
	case 6:
		return BIT_ULL(63);
	case 7:
		return old + 1;
	case 8:
		return old - 1;
	case 9:
		return old ^ BIT_ULL(fuzz_below(f, 64));
	case 10:
		return fuzz_next(f) >> fuzz_below(f, 64);
	default:
		return fuzz_next(f);
	}
}

static u32 fuzz_chunk(struct fuzz *f)
{
	return DMR_MIN_CHUNK_SECTORS <<
	       fuzz_below(f, ilog2(DMR_MAX_CHUNK_SECTORS /
				   DMR_MIN_CHUNK_SECTORS) + 1);
}

/* ---- the format's rules, restated independently ---------------------------- */

static u32 fuzz_csum(const struct dmr_disk_header *d)
{
	return crc32c(~0U, (const u8 *)d + sizeof(d->csum),
		      sizeof(*d) - sizeof(d->csum));
}

static void fuzz_seal(struct dmr_disk_header *d)
{
	d->csum = cpu_to_le32(fuzz_csum(d));
}

static bool fuzz_chunk_valid(u64 c)
{
	return c >= DMR_MIN_CHUNK_SECTORS && c <= DMR_MAX_CHUNK_SECTORS &&
	       is_power_of_2(c);
}

/* Chunks of a target of @sectors, rounded up, for a valid chunk size. */
static u64 fuzz_nr_chunks(u64 sectors, u32 chunk)
{
	return sectors / chunk + (sectors % chunk ? 1 : 0);
}

static u64 fuzz_meta_blocks(u64 nr_slots)
{
	return nr_slots / DMR_RECORDS_PER_BLOCK +
	       (nr_slots % DMR_RECORDS_PER_BLOCK ? 1 : 0);
}

static u64 fuzz_data_start(u64 nr_slots, u32 chunk)
{
	u64 end = DMR_HEADER_SECTORS +
		  fuzz_meta_blocks(nr_slots) * DMR_META_BLOCK_SECTORS;

	return round_up(end, (u64)chunk);
}

/* The sectors a layout takes, when its fields are within their bounds. */
static u64 fuzz_layout_end(const struct dmr_header *h)
{
	return h->layout.data_start + h->layout.nr_slots * h->chunk_sectors;
}

/*
 * A header dmr_header_decode() accepted: every bound, and every field as the
 * disk holds it (re-encoding gives the same bytes, but the reserved ones).
 */
static bool fuzz_header_sound(struct fuzz *f, const struct dmr_disk_header *d,
			      const struct dmr_header *h)
{
	const struct dmr_layout *l = &h->layout;
	struct dmr_disk_header e;
	u64 meta_end;

	if (le32_to_cpu(d->magic) != DMR_MAGIC ||
	    le32_to_cpu(d->version) != DMR_VERSION ||
	    le32_to_cpu(d->csum) != fuzz_csum(d)) {
		fuzz_fail(f, "accepted a bad magic, version or checksum");
		return false;
	}
	if (h->role != DMR_ROLE_HIDDEN && h->role != DMR_ROLE_ACTIVE) {
		fuzz_fail(f, "accepted role %u", h->role);
		return false;
	}
	if (h->state >= DMR_NR_STATES) {
		fuzz_fail(f, "accepted state %u", h->state);
		return false;
	}
	if (!h->seq || !h->epoch) {
		fuzz_fail(f, "accepted seq %llu epoch %llu", h->seq, h->epoch);
		return false;
	}
	if (!fuzz_chunk_valid(h->chunk_sectors)) {
		fuzz_fail(f, "accepted chunk_sectors %u", h->chunk_sectors);
		return false;
	}
	if (!l->nr_slots || l->nr_slots > DMR_MAX_SLOTS) {
		fuzz_fail(f, "accepted nr_slots %llu", l->nr_slots);
		return false;
	}
	meta_end = l->meta_start + l->meta_blocks * DMR_META_BLOCK_SECTORS;
	if (l->meta_start != DMR_HEADER_SECTORS ||
	    l->meta_blocks != fuzz_meta_blocks(l->nr_slots) ||
	    l->data_start < meta_end ||
	    l->data_start - meta_end >= h->chunk_sectors ||
	    l->data_start % h->chunk_sectors) {
		fuzz_fail(f, "accepted layout meta %llu+%llu data %llu slots %llu chunk %u",
			  l->meta_start, l->meta_blocks, l->data_start,
			  l->nr_slots, h->chunk_sectors);
		return false;
	}
	if (h->commit_cursor >
	    fuzz_nr_chunks(h->secondary_sectors, h->chunk_sectors)) {
		fuzz_fail(f, "accepted commit cursor %llu past %llu sectors in chunks of %u",
			  h->commit_cursor, h->secondary_sectors,
			  h->chunk_sectors);
		return false;
	}
	dmr_header_encode(h, &e);
	/* Not the checksum: it covers the reserved bytes, which encode zeroes. */
	if (memcmp(&e.magic, &d->magic, offsetof(struct dmr_disk_header, reserved) -
		   offsetof(struct dmr_disk_header, magic))) {
		fuzz_fail(f, "decoded fields differ from the disk's");
		return false;
	}
	return true;
}

/*
 * dmr_header_check() of an accepted header against a table: what it accepts
 * is that table's and fits the device; what fits it must accept.
 */
static void fuzz_check(struct fuzz *f, const struct dmr_header *h, u64 dev)
{
	enum dmr_role role = h->role;
	u32 chunk = h->chunk_sectors;
	u64 len = h->secondary_sectors;
	u64 end = fuzz_layout_end(h);
	char *error = NULL;
	bool fits;
	int r;

	if (!fuzz_below(f, 8))
		role = role == DMR_ROLE_HIDDEN ? DMR_ROLE_ACTIVE : DMR_ROLE_HIDDEN;
	if (!fuzz_below(f, 8))
		chunk = fuzz_chunk(f);
	if (!fuzz_below(f, 8))
		len = fuzz_extreme(f, len);
	switch (fuzz_below(f, 6)) {
	case 0:
		dev = end;
		break;
	case 1:
		dev = end - 1;
		break;
	case 2:
		dev = end + fuzz_below(f, 1 << 20);
		break;
	case 3:
		dev = fuzz_extreme(f, dev);
		break;
	default:
		break;		/* the device the header was made for */
	}

	f->checked++;
	r = dmr_header_check(h, role, chunk, len, dev, &error);
	fits = role == h->role && chunk == h->chunk_sectors &&
	       len == h->secondary_sectors && end <= dev;
	if (r) {
		if (r != -EINVAL || !error)
			fuzz_fail(f, "check returned %d, error %p", r, error);
		else if (fits)
			fuzz_fail(f, "check refused a fitting header: %s", error);
		return;
	}
	f->check_accepted++;
	if (!fits) {
		fuzz_fail(f, "check accepted role %u/%u chunk %u/%u len %llu/%llu end %llu > %llu",
			  h->role, role, h->chunk_sectors, chunk,
			  h->secondary_sectors, len, end, dev);
		return;
	}
	/* Every slot's chunk and every record block lie on the device. */
	if (h->layout.data_start + (h->layout.nr_slots - 1) * chunk + chunk > dev ||
	    h->layout.meta_start + h->layout.meta_blocks * DMR_META_BLOCK_SECTORS >
	    h->layout.data_start ||
	    h->commit_cursor > fuzz_nr_chunks(len, chunk))
		fuzz_fail(f, "check accepted a layout off the device");
}

/* Decodes one copy; checks whatever comes back.  Return: decode's result. */
static int fuzz_decode(struct fuzz *f, const struct dmr_disk_header *d,
		       struct dmr_header *h, u64 dev)
{
	char *error = NULL;
	int r;

	r = dmr_header_decode(d, h, &error);
	if (r) {
		if (r != -EINVAL || !error || !*error)
			fuzz_fail(f, "decode returned %d without a reason", r);
		f->refused++;
		return r;
	}
	f->accepted++;
	if (fuzz_header_sound(f, d, h))
		fuzz_check(f, h, dev);
	return 0;
}

/* ---- block generators -------------------------------------------------------- */

/* A valid header for a random device; @dev is set to the device's size. */
static void fuzz_valid_header(struct fuzz *f, struct dmr_header *h, u64 *dev)
{
	u32 chunk = fuzz_chunk(f);

	memset(h, 0, sizeof(*h));
	h->role = fuzz_below(f, 2) ? DMR_ROLE_HIDDEN : DMR_ROLE_ACTIVE;
	h->seq = fuzz_below(f, 2) ? 1 + fuzz_below(f, 16) : fuzz_next(f) | 1;
	h->epoch = fuzz_next(f) | 1;
	fuzz_fill(f, h->uuid, DMR_UUID_SIZE);
	h->state = fuzz_below(f, DMR_NR_STATES);
	h->chunk_sectors = chunk;
	h->secondary_sectors = 1 + fuzz_below(f, (u64)U32_MAX * chunk);
	h->commit_cursor = fuzz_below(f, fuzz_nr_chunks(h->secondary_sectors,
							chunk) + 1);
	/* Up to 512 TiB, and room for one slot at least. */
	*dev = DMR_HEADER_SECTORS + DMR_META_BLOCK_SECTORS + 2 * chunk +
	       (fuzz_next(f) & (BIT_ULL(fuzz_below(f, 41)) - 1));
	dmr_layout_init(&h->layout, *dev, chunk);
}

static void fuzz_put(struct dmr_disk_header *d, size_t off, size_t size, u64 v)
{
	__le64 v64 = cpu_to_le64(v);
	__le32 v32 = cpu_to_le32((u32)v);

	memcpy((u8 *)d + off, size == 8 ? (void *)&v64 : (void *)&v32, size);
}

static u64 fuzz_get(const struct dmr_disk_header *d, size_t off, size_t size)
{
	__le64 v64 = 0;
	__le32 v32 = 0;

	if (size == 8) {
		memcpy(&v64, (const u8 *)d + off, 8);
		return le64_to_cpu(v64);
	}
	memcpy(&v32, (const u8 *)d + off, 4);
	return le32_to_cpu(v32);
}

/* The numeric fields, with their sizes (4 or 8 bytes). */
#define FUZZ_FIELD(name, size) { offsetof(struct dmr_disk_header, name), size }

static const struct {
	size_t off;
	size_t size;
} fuzz_fields[] = {
	FUZZ_FIELD(magic, 4),
	FUZZ_FIELD(version, 4),
	FUZZ_FIELD(role, 4),
	FUZZ_FIELD(seq, 8),
	FUZZ_FIELD(epoch, 8),
	FUZZ_FIELD(state, 4),
	FUZZ_FIELD(chunk_sectors, 4),
	FUZZ_FIELD(secondary_sectors, 8),
	FUZZ_FIELD(nr_slots, 8),
	FUZZ_FIELD(meta_start, 8),
	FUZZ_FIELD(data_start, 8),
	FUZZ_FIELD(commit_cursor, 8),
};

/* One hostile change to an encoded header @h of a device of @dev sectors. */
static void fuzz_mutate(struct fuzz *f, struct dmr_disk_header *d,
			const struct dmr_header *h, u64 dev)
{
	u64 nr_chunks = fuzz_nr_chunks(h->secondary_sectors, h->chunk_sectors);
	unsigned int i, n;
	u64 slots;
	u32 chunk;

	switch (fuzz_below(f, 10)) {
	case 0:		/* 1-8 bit flips anywhere */
		n = 1 + fuzz_below(f, 8);
		for (i = 0; i < n; i++) {
			unsigned int bit = fuzz_below(f, SECTOR_SIZE * 8);

			((u8 *)d)[bit / 8] ^= BIT(bit % 8);
		}
		break;
	case 1:		/* a field at an extreme */
		i = fuzz_below(f, ARRAY_SIZE(fuzz_fields));
		fuzz_put(d, fuzz_fields[i].off, fuzz_fields[i].size,
			 fuzz_extreme(f, fuzz_get(d, fuzz_fields[i].off,
						  fuzz_fields[i].size)));
		break;
	case 2:		/* another chunk size: bad, or valid but not this layout's */
		switch (fuzz_below(f, 4)) {
		case 0:
			chunk = fuzz_chunk(f);
			break;
		case 1:
			chunk = h->chunk_sectors * 2 + 1 - fuzz_below(f, 3);
			break;
		case 2:
			chunk = BIT(fuzz_below(f, 32));
			break;
		default:
			chunk = fuzz_next(f);
			break;
		}
		d->chunk_sectors = cpu_to_le32(chunk);
		break;
	case 3:		/* more slots than the device holds, the layout consistent */
		slots = h->layout.nr_slots + 1 + fuzz_below(f, 1 + h->layout.nr_slots);
		if (!fuzz_below(f, 4))
			slots = DMR_MAX_SLOTS - fuzz_below(f, 2);
		slots = min_t(u64, slots, DMR_MAX_SLOTS);
		d->nr_slots = cpu_to_le64(slots);
		d->data_start = cpu_to_le64(fuzz_data_start(slots,
							    h->chunk_sectors));
		break;
	case 4:		/* slots past the store's limit, or none */
		slots = fuzz_below(f, 2) ? (u64)DMR_MAX_SLOTS + 1 +
			fuzz_below(f, 3) : 0;
		if (!fuzz_below(f, 3))
			slots = BIT_ULL(32 + fuzz_below(f, 32));
		d->nr_slots = cpu_to_le64(slots);
		d->data_start = cpu_to_le64(fuzz_data_start(slots,
							    h->chunk_sectors));
		break;
	case 5:		/* meta_start or data_start off by a little or a lot */
		if (fuzz_below(f, 2))
			d->meta_start = cpu_to_le64(fuzz_below(f, 2 * DMR_HEADER_SECTORS));
		else if (fuzz_below(f, 2))
			d->data_start = cpu_to_le64(h->layout.data_start +
						    (fuzz_below(f, 2) ?
						     h->chunk_sectors : 1));
		else
			d->data_start = cpu_to_le64(h->layout.data_start -
						    (fuzz_below(f, 2) ?
						     h->chunk_sectors : 1));
		break;
	case 6:		/* another generation or epoch */
		if (fuzz_below(f, 2))
			d->seq = cpu_to_le64(fuzz_extreme(f, h->seq));
		else
			d->epoch = cpu_to_le64(fuzz_extreme(f, h->epoch));
		break;
	case 7:		/* a commit cursor at or past the target's end */
		d->commit_cursor = cpu_to_le64(fuzz_below(f, 2) ?
			nr_chunks + fuzz_below(f, 2) : fuzz_extreme(f, nr_chunks));
		break;
	case 8:		/* the target length changes under the cursor */
		d->secondary_sectors = cpu_to_le64(fuzz_extreme(f, h->secondary_sectors));
		break;
	default:	/* the valid layout of another device or chunk size */
		{
			struct dmr_layout l;

			chunk = fuzz_below(f, 2) ? h->chunk_sectors : fuzz_chunk(f);
			dmr_layout_init(&l, fuzz_extreme(f, dev), chunk);
			d->chunk_sectors = cpu_to_le32(chunk);
			d->nr_slots = cpu_to_le64(l.nr_slots);
			d->meta_start = cpu_to_le64(l.meta_start);
			d->data_start = cpu_to_le64(l.data_start);
		}
		break;
	}
}

/* A valid header, mutated 1-3 times, sealed again 7 times in 8. */
static void fuzz_mutated_header(struct fuzz *f, struct dmr_disk_header *d,
				u64 *dev)
{
	struct dmr_header h;
	unsigned int i, n = 1 + fuzz_below(f, 3);

	fuzz_valid_header(f, &h, dev);
	dmr_header_encode(&h, d);
	for (i = 0; i < n; i++)
		fuzz_mutate(f, d, &h, *dev);
	if (fuzz_below(f, 8))
		fuzz_seal(d);
}

/* Random bytes, made more or less header-like so that deeper checks run. */
static void fuzz_random_header(struct fuzz *f, struct dmr_disk_header *d,
			       u64 *dev)
{
	unsigned int depth = fuzz_below(f, 5);

	fuzz_fill(f, d, sizeof(*d));
	*dev = fuzz_extreme(f, fuzz_next(f) >> 20);
	if (depth == 0)
		return;		/* purely random: the magic refuses it */
	d->magic = cpu_to_le32(DMR_MAGIC);
	if (depth >= 2)
		d->version = cpu_to_le32(DMR_VERSION);
	if (depth >= 3) {
		d->role = cpu_to_le32(1 + fuzz_below(f, 2));
		d->state = cpu_to_le32(fuzz_below(f, DMR_NR_STATES));
	}
	if (depth >= 4) {
		d->chunk_sectors = cpu_to_le32(fuzz_chunk(f));
		d->meta_start = cpu_to_le64(DMR_HEADER_SECTORS);
	}
	if (depth >= 1 && fuzz_below(f, 8))
		fuzz_seal(d);
}

/* ---- the cases ------------------------------------------------------------------ */

static struct dmr_disk_header *fuzz_block(struct kunit *test)
{
	/* Its exact size: KASAN reports a read past its end. */
	struct dmr_disk_header *d = kunit_kmalloc(test, sizeof(*d), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, d);
	return d;
}

static void fuzz_report(struct fuzz *f, const char *what)
{
	kunit_info(f->test, "%s: %lu cases (seeds from %#llx): %lu refused, %lu accepted; %lu checks, %lu accepted; %lu failures\n",
		   what, f->cases, FUZZ_SEED, f->refused, f->accepted,
		   f->checked, f->check_accepted, f->failures);
	KUNIT_EXPECT_EQ(f->test, f->failures, 0UL);
}

static void header_decode_random_blocks(struct kunit *test)
{
	struct dmr_disk_header *d = fuzz_block(test);
	struct dmr_header h;
	struct fuzz f;
	unsigned int i;
	u64 dev;

	fuzz_init(&f, test);
	for (i = 0; i < FUZZ_HEADER_RANDOM; i++) {
		fuzz_case(&f, 1, i);
		fuzz_random_header(&f, d, &dev);
		fuzz_decode(&f, d, &h, dev);
	}
	fuzz_report(&f, "random header blocks");
}

static void header_decode_mutated_blocks(struct kunit *test)
{
	struct dmr_disk_header *d = fuzz_block(test);
	struct dmr_header h;
	struct fuzz f;
	unsigned int i;
	u64 dev;

	fuzz_init(&f, test);
	for (i = 0; i < FUZZ_HEADER_MUTATED; i++) {
		fuzz_case(&f, 2, i);
		fuzz_mutated_header(&f, d, &dev);
		fuzz_decode(&f, d, &h, dev);
	}
	fuzz_report(&f, "mutated header blocks");
}

/* One copy of a header area: blank, valid, mutated or random. */
static void fuzz_copy(struct fuzz *f, struct dmr_disk_header *d, u64 *dev)
{
	struct dmr_header h;

	switch (fuzz_below(f, 4)) {
	case 0:
		memset(d, 0, sizeof(*d));
		*dev = 0;
		break;
	case 1:
		fuzz_valid_header(f, &h, dev);
		dmr_header_encode(&h, d);
		break;
	case 2:
		fuzz_mutated_header(f, d, dev);
		break;
	default:
		fuzz_random_header(f, d, dev);
		break;
	}
}

static void header_pick_hostile_areas(struct kunit *test)
{
	size_t size = DMR_HEADER_SECTORS << SECTOR_SHIFT;
	struct dmr_disk_header *d = kunit_kmalloc(test, size, GFP_KERNEL);
	const struct dmr_disk_header *src;
	struct dmr_header a, b, h;
	struct fuzz f;
	char *error;
	int ra, rb, r;
	unsigned int i;
	u64 dev, dev_b;

	KUNIT_ASSERT_NOT_NULL(test, d);
	fuzz_init(&f, test);
	for (i = 0; i < FUZZ_PICK; i++) {
		fuzz_case(&f, 3, i);
		memset(d, 0, size);
		fuzz_copy(&f, &d[0], &dev);
		fuzz_copy(&f, &d[1], &dev_b);
		if (!fuzz_below(&f, 4))
			fuzz_fill(&f, &d[2], size - 2 * sizeof(*d));
		/* The reference: each copy on its own. */
		error = NULL;
		ra = dmr_header_decode(&d[0], &a, &error);
		rb = dmr_header_decode(&d[1], &b, &error);

		error = NULL;
		r = dmr_header_pick(d, &h, &error);
		if (r == 1) {
			if (memchr_inv(d, 0, size))
				fuzz_fail(&f, "pick called a used area blank");
			f.refused++;
			continue;
		}
		if (r) {
			if (r != -EINVAL || !error || !*error)
				fuzz_fail(&f, "pick returned %d without a reason", r);
			if (!ra || !rb)
				fuzz_fail(&f, "pick refused a valid copy");
			f.refused++;
			continue;
		}
		f.accepted++;
		if (!ra && (rb || a.seq >= b.seq)) {
			src = &d[0];
			if (memcmp(&h, &a, sizeof(h)))
				fuzz_fail(&f, "pick did not give the newer copy A");
		} else if (!rb) {
			src = &d[1];
			if (memcmp(&h, &b, sizeof(h)))
				fuzz_fail(&f, "pick did not give the newer copy B");
			dev = dev_b;
		} else {
			fuzz_fail(&f, "pick accepted two invalid copies");
			continue;
		}
		if (fuzz_header_sound(&f, src, &h))
			fuzz_check(&f, &h, dev);
	}
	fuzz_report(&f, "4 KiB header areas (two copies each)");
}

static void record_decode_hostile_blocks(struct kunit *test)
{
	struct dmr_disk_record *rec = kunit_kmalloc(test, SECTOR_SIZE, GFP_KERNEL);
	unsigned long live = 0, records = 0;
	struct fuzz f;
	unsigned int i, j;

	KUNIT_ASSERT_NOT_NULL(test, rec);
	fuzz_init(&f, test);
	for (i = 0; i < FUZZ_RECORD_BLOCKS; i++) {
		u64 epoch, nr_chunks;

		fuzz_case(&f, 4, i);
		epoch = fuzz_next(&f) | 1;
		switch (fuzz_below(&f, 4)) {
		case 0:
			nr_chunks = 1 + fuzz_below(&f, 3);
			break;
		case 1:
			nr_chunks = U32_MAX - fuzz_below(&f, 3);
			break;
		default:
			nr_chunks = 1 + fuzz_below(&f, U32_MAX);
			break;
		}
		if (!fuzz_below(&f, 8))
			fuzz_fill(&f, rec, SECTOR_SIZE);
		else
			for (j = 0; j < FUZZ_RECORDS; j++) {
				u64 c = fuzz_below(&f, nr_chunks);
				u64 e = epoch;

				switch (fuzz_below(&f, 8)) {
				case 0:
					c = fuzz_extreme(&f, nr_chunks);
					break;
				case 1:
					c = nr_chunks + fuzz_below(&f, 2) *
					    BIT_ULL(32);
					break;
				case 2:
					e = fuzz_extreme(&f, epoch);
					break;
				case 3:
					c ^= BIT_ULL(fuzz_below(&f, 64));
					e ^= fuzz_below(&f, 2) ?
					     BIT_ULL(fuzz_below(&f, 64)) : 0;
					break;
				default:
					break;	/* a valid record */
				}
				rec[j].chunk = cpu_to_le64(c);
				rec[j].epoch = cpu_to_le64(e);
			}
		if (!fuzz_below(&f, 32))
			memset(rec, 0, SECTOR_SIZE);

		for (j = 0; j < FUZZ_RECORDS; j++) {
			u64 c = le64_to_cpu(rec[j].chunk);
			bool want = le64_to_cpu(rec[j].epoch) == epoch &&
				    c < nr_chunks;
			u32 chunk = 0;
			bool got;

			records++;
			got = dmr_record_live(&rec[j], epoch, nr_chunks, &chunk);
			if (got != want) {
				fuzz_fail(&f, "record %u (%llu, %llu) live %d: %llu, %llu chunks",
					  j, c, le64_to_cpu(rec[j].epoch), got,
					  epoch, nr_chunks);
				continue;
			}
			if (got) {
				live++;
				if (chunk != c || chunk >= nr_chunks)
					fuzz_fail(&f, "record %u: chunk %u, disk %llu, %llu chunks",
						  j, chunk, c, nr_chunks);
			}
		}
	}
	f.accepted = live;
	f.refused = records - live;
	kunit_info(test, "records: %lu blocks of %u (seeds from %#llx): %lu live, %lu dead; %lu failed\n",
		   f.cases, (unsigned int)FUZZ_RECORDS, FUZZ_SEED, live,
		   records - live, f.failures);
	KUNIT_EXPECT_EQ(test, f.failures, 0UL);
}

static struct kunit_case dmr_format_fuzz_cases[] = {
	KUNIT_CASE(header_decode_random_blocks),
	KUNIT_CASE(header_decode_mutated_blocks),
	KUNIT_CASE(header_pick_hostile_areas),
	KUNIT_CASE(record_decode_hostile_blocks),
	{}
};

static struct kunit_suite dmr_format_fuzz_suite = {
	.name = "dm-replication-format-fuzz",
	.test_cases = dmr_format_fuzz_cases,
};

kunit_test_suites(&dmr_format_fuzz_suite);
