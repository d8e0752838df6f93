// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit suites for dm-replication's pure logic.
 *
 * Built only into the module of make KUNIT=1, with
 * CONFIG_DM_REPLICATION_KUNIT_TEST (see tests/kunit/run).
 */
#include <kunit/test.h>
#include <linux/crc32c.h>
#include <linux/kernel.h>
#include <linux/llist.h>
#include <linux/prandom.h>
#include <linux/slab.h>
#include <linux/sort.h>

#include "dm-replication.h"
#include "dm-replication-commit.h"
#include "dm-replication-cow.h"
#include "dm-replication-format.h"
#include "dm-replication-primary.h"
#include "dm-replication-test.h"

/* ---- dmr_parse_mode ---------------------------------------------------- */

static void mode_accepts_the_three_modes(struct kunit *test)
{
	enum dmr_mode mode;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_mode("secondary", &mode, &error), 0);
	KUNIT_EXPECT_EQ(test, mode, DMR_MODE_SECONDARY);
	KUNIT_EXPECT_EQ(test, dmr_parse_mode("primary", &mode, &error), 0);
	KUNIT_EXPECT_EQ(test, mode, DMR_MODE_PRIMARY);
	KUNIT_EXPECT_EQ(test, dmr_parse_mode("port", &mode, &error), 0);
	KUNIT_EXPECT_EQ(test, mode, DMR_MODE_PORT);
	KUNIT_EXPECT_NULL(test, error);
}

static void mode_rejects_missing_and_unknown(struct kunit *test)
{
	enum dmr_mode mode = DMR_MODE_PORT;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_mode(NULL, &mode, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Missing mode: expected secondary, primary or port");

	error = NULL;
	KUNIT_EXPECT_EQ(test, dmr_parse_mode("Secondary", &mode, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Unknown mode: expected secondary, primary or port");
	KUNIT_EXPECT_EQ(test, dmr_parse_mode("", &mode, &error), -EINVAL);
	KUNIT_EXPECT_EQ(test, dmr_parse_mode("ports", &mode, &error), -EINVAL);
	KUNIT_EXPECT_EQ(test, mode, DMR_MODE_PORT);	/* untouched */
}

/* ---- dmr_parse_chunk_size ---------------------------------------------- */

static void chunk_size_accepts_powers_of_two_in_range(struct kunit *test)
{
	static const char * const ok[] = { "8", "16", "64", "128", "1024",
					   "2048" };
	sector_t chunk;
	char *error = NULL;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		unsigned int expected;

		KUNIT_ASSERT_EQ(test, kstrtouint(ok[i], 10, &expected), 0);
		KUNIT_EXPECT_EQ_MSG(test,
				    dmr_parse_chunk_size(ok[i], &chunk, &error),
				    0, "chunk size %s", ok[i]);
		KUNIT_EXPECT_EQ(test, chunk, (sector_t)expected);
	}
	KUNIT_EXPECT_NULL(test, error);
}

struct chunk_case {
	const char *arg;
	const char *error;
};

static const struct chunk_case bad_chunks[] = {
	{ "", "Invalid chunk size: not a number" },
	{ "abc", "Invalid chunk size: not a number" },
	{ "8k", "Invalid chunk size: not a number" },
	{ "-8", "Invalid chunk size: not a number" },
	{ "99999999999", "Invalid chunk size: not a number" },
	{ "0", "Invalid chunk size: not a power of two" },
	{ "12", "Invalid chunk size: not a power of two" },
	{ "2047", "Invalid chunk size: not a power of two" },
	{ "1", "Invalid chunk size: must be 8 to 2048 sectors" },
	{ "4", "Invalid chunk size: must be 8 to 2048 sectors" },
	{ "4096", "Invalid chunk size: must be 8 to 2048 sectors" },
	{ "2147483648", "Invalid chunk size: must be 8 to 2048 sectors" },
};

static void chunk_size_rejects_bad_values(struct kunit *test)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_chunks); i++) {
		sector_t chunk = 77;
		char *error = NULL;

		KUNIT_EXPECT_EQ_MSG(test,
				    dmr_parse_chunk_size(bad_chunks[i].arg,
							 &chunk, &error),
				    -EINVAL, "chunk size '%s'",
				    bad_chunks[i].arg);
		KUNIT_EXPECT_STREQ_MSG(test, error, bad_chunks[i].error,
				       "chunk size '%s'", bad_chunks[i].arg);
		KUNIT_EXPECT_EQ(test, chunk, (sector_t)77);
	}
}

static void store_capacity_leaves_room_for_header_and_records(struct kunit *test)
{
	/* 8 header sectors + one 4 KiB block of records, aligned to a chunk. */
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(0, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(16, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(23, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(24, 8), (sector_t)1);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(2048 * 2, 2048), (sector_t)1);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(2048 * 64, 2048), (sector_t)63);
	/* 64 MiB of 4 KiB chunks: 16384 - 1 (headers) - 64 (records) + 1. */
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(131072, 8), (sector_t)16319);
}

static void layout_fits_the_device_for_every_size(struct kunit *test)
{
	static const u32 chunks[] = { 8, 64, 2048 };
	unsigned int i;
	u64 dev;

	for (i = 0; i < ARRAY_SIZE(chunks); i++) {
		for (dev = 0; dev < 40000; dev += 97) {
			struct dmr_layout l;
			u64 end;

			dmr_layout_init(&l, dev, chunks[i]);
			end = l.data_start + l.nr_slots * chunks[i];
			if (l.nr_slots)
				KUNIT_EXPECT_LE(test, end, dev);
			KUNIT_EXPECT_EQ(test, l.meta_start, (u64)DMR_HEADER_SECTORS);
			KUNIT_EXPECT_EQ(test, l.data_start % chunks[i], 0ULL);
			KUNIT_EXPECT_GE(test, l.data_start,
					l.meta_start + l.meta_blocks * 8);
			KUNIT_EXPECT_GE(test, l.meta_blocks * DMR_RECORDS_PER_BLOCK,
					l.nr_slots);
			/* And it is the largest: one more slot would not fit. */
			if (l.nr_slots) {
				struct dmr_layout m;

				dmr_layout_init(&m, end - 1, chunks[i]);
				KUNIT_EXPECT_LT(test, m.nr_slots, l.nr_slots);
			}
		}
	}
}

/* ---- feature arguments ------------------------------------------------- */

#define ARGS(...) ((char *[]){ __VA_ARGS__ })
#define ARG_SET(...) { .argc = ARRAY_SIZE(ARGS(__VA_ARGS__)), \
		       .argv = ARGS(__VA_ARGS__) }

static void features_accept_none_and_empty(struct kunit *test)
{
	struct dmr_secondary_features f = { .has_low_water_mark = true };
	struct dm_arg_set none = { .argc = 0, .argv = NULL };
	struct dm_arg_set empty = ARG_SET("0");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&none, &f, &error),
			0);
	KUNIT_EXPECT_FALSE(test, f.has_low_water_mark);
	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&empty, &f, &error),
			0);
	KUNIT_EXPECT_FALSE(test, f.has_low_water_mark);
	KUNIT_EXPECT_NULL(test, error);
}

static void features_accept_low_water_mark(struct kunit *test)
{
	struct dmr_secondary_features f;
	struct dm_arg_set as = ARG_SET("2", "low_water_mark", "128");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&as, &f, &error), 0);
	KUNIT_EXPECT_TRUE(test, f.has_low_water_mark);
	KUNIT_EXPECT_EQ(test, f.low_water_mark, 128U);
	KUNIT_EXPECT_EQ(test, as.argc, 0U);
}

static void features_accept_port_copy_chunks(struct kunit *test)
{
	struct dmr_secondary_features f;
	struct dm_arg_set both = ARG_SET("4", "port_copy_chunks", "16",
					 "low_water_mark", "8");
	struct dm_arg_set one = ARG_SET("2", "port_copy_chunks", "1");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&both, &f, &error),
			0);
	KUNIT_EXPECT_TRUE(test, f.has_port_copy_chunks);
	KUNIT_EXPECT_EQ(test, f.port_copy_chunks, 16U);
	KUNIT_EXPECT_TRUE(test, f.has_low_water_mark);
	KUNIT_EXPECT_EQ(test, f.low_water_mark, 8U);
	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&one, &f, &error),
			0);
	KUNIT_EXPECT_TRUE(test, f.has_port_copy_chunks);
	KUNIT_EXPECT_EQ(test, f.port_copy_chunks, 1U);
	KUNIT_EXPECT_FALSE(test, f.has_low_water_mark);
	KUNIT_EXPECT_NULL(test, error);
}

struct feature_case {
	unsigned int argc;
	char *argv[5];
	const char *error;
};

static const struct feature_case bad_features[] = {
	{ 1, { "x" }, "Invalid number of feature arguments" },
	{ 1, { "3" }, "Invalid number of feature arguments" },
	{ 1, { "6" }, "Invalid number of feature arguments" },
	{ 2, { "1", "port_copy_chunks" },
	  "Feature port_copy_chunks needs a value" },
	{ 3, { "2", "port_copy_chunks", "0" },
	  "Invalid port_copy_chunks: expected a power of two from 1 to 256" },
	{ 3, { "2", "port_copy_chunks", "12" },
	  "Invalid port_copy_chunks: expected a power of two from 1 to 256" },
	{ 3, { "2", "port_copy_chunks", "512" },
	  "Invalid port_copy_chunks: expected a power of two from 1 to 256" },
	{ 3, { "2", "port_copy_chunks", "4294967312" },
	  "Invalid port_copy_chunks: expected a power of two from 1 to 256" },
	{ 2, { "1", "low_water_mark" }, "Feature low_water_mark needs a value" },
	{ 3, { "2", "low_water_mark", "many" },
	  "Invalid low_water_mark: not a number" },
	{ 3, { "2", "low_water_mark", "-1" },
	  "Invalid low_water_mark: not a number" },
	{ 3, { "2", "low_water_mark", "4294967297" },
	  "Invalid low_water_mark: not a number" },
	{ 3, { "2", "discard", "1" }, "Unrecognised feature argument" },
	{ 2, { "1", "LOW_WATER_MARK" }, "Unrecognised feature argument" },
	{ 2, { "2", "low_water_mark" }, "Invalid number of feature arguments" },
	{ 4, { "2", "low_water_mark", "5", "junk" }, "Too many arguments" },
	{ 2, { "0", "junk" }, "Too many arguments" },
};

static void features_reject_bad_groups(struct kunit *test)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_features); i++) {
		const struct feature_case *c = &bad_features[i];
		char *argv[5];
		struct dm_arg_set as = { .argc = c->argc, .argv = argv };
		struct dmr_secondary_features f;
		char *error = NULL;

		memcpy(argv, c->argv, sizeof(argv));
		KUNIT_EXPECT_EQ_MSG(test,
				    dmr_parse_secondary_features(&as, &f, &error),
				    -EINVAL, "case %u", i);
		KUNIT_EXPECT_STREQ_MSG(test, error, c->error, "case %u", i);
	}
}

static void features_reject_duplicates(struct kunit *test)
{
	struct dmr_secondary_features f;
	struct dm_arg_set as = ARG_SET("4", "low_water_mark", "1",
				       "low_water_mark", "2");
	struct dm_arg_set pc = ARG_SET("4", "port_copy_chunks", "2",
				       "port_copy_chunks", "2");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&as, &f, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Duplicate feature argument");
	error = NULL;
	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&pc, &f, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Duplicate feature argument");
}

static void no_features_accepts_only_empty(struct kunit *test)
{
	struct dm_arg_set none = { .argc = 0, .argv = NULL };
	struct dm_arg_set empty = ARG_SET("0");
	struct dm_arg_set one = ARG_SET("1", "mirror_sync");
	struct dm_arg_set trailing = ARG_SET("0", "extra");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_no_features(&none, &error), 0);
	KUNIT_EXPECT_EQ(test, dmr_parse_no_features(&empty, &error), 0);
	KUNIT_EXPECT_NULL(test, error);
	KUNIT_EXPECT_EQ(test, dmr_parse_no_features(&one, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Unrecognised feature argument");
	KUNIT_EXPECT_EQ(test, dmr_parse_no_features(&trailing, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Too many arguments");
}

/* ---- messages and states ----------------------------------------------- */

static void message_accepts_the_four(struct kunit *test)
{
	unsigned int value = 0;
	enum dmr_msg msg;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("checkpoint"), &msg,
						&value, &error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_CHECKPOINT);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("stop"), &msg, &value,
						&error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_STOP);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("failover"), &msg,
						&value, &error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_FAILOVER);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(2, ARGS("commit_depth", "1"),
						&msg, &value, &error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_COMMIT_DEPTH);
	KUNIT_EXPECT_EQ(test, value, 1U);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(2, ARGS("commit_depth", "64"),
						&msg, &value, &error), 0);
	KUNIT_EXPECT_EQ(test, value, 64U);
	KUNIT_EXPECT_NULL(test, error);
}

static void message_rejects_bad_commit_depth(struct kunit *test)
{
	static const char * const bad[] = { "0", "65", "x", "-1", "8x", "",
					    "4294967297" };
	unsigned int value = 0, i;
	enum dmr_msg msg;
	char *error = NULL;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		KUNIT_EXPECT_EQ_MSG(test,
				    dmr_parse_message(2, ARGS("commit_depth",
							      (char *)bad[i]),
						      &msg, &value, &error),
				    -EINVAL, "value '%s'", bad[i]);
		KUNIT_EXPECT_STREQ(test, error,
				   "Invalid commit_depth: expected 1 to 64 extents");
	}
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("commit_depth"), &msg,
						&value, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Message needs an argument");
	KUNIT_EXPECT_EQ(test, dmr_parse_message(3, ARGS("commit_depth", "4",
							"4"),
						&msg, &value, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Message takes one argument");
}

static void message_rejects_unknown_and_extra(struct kunit *test)
{
	unsigned int value;
	enum dmr_msg msg;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_message(0, NULL, &msg, &value, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Empty message");
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("checkpoints"), &msg,
						&value, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Unrecognised message");
	KUNIT_EXPECT_EQ(test, dmr_parse_message(2, ARGS("stop", "now"), &msg,
						&value, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Message takes no arguments");
}

static void state_names_match_the_status_contract(struct kunit *test)
{
	KUNIT_EXPECT_STREQ(test, dmr_state_name(DMR_STATE_RUNNING), "running");
	KUNIT_EXPECT_STREQ(test, dmr_state_name(DMR_STATE_FAILOVER),
			   "failover");
	KUNIT_EXPECT_STREQ(test, dmr_state_name(DMR_STATE_FAILOVER_FAILED),
			   "failover_failed");
	KUNIT_EXPECT_STREQ(test, dmr_state_name(DMR_STATE_DONE), "done");
	KUNIT_EXPECT_STREQ(test, dmr_state_name((enum dmr_state)42),
			   "unknown");
}

/* ---- on-disk headers ----------------------------------------------------- */

static void make_header(struct dmr_header *h, enum dmr_role role, u64 seq)
{
	memset(h, 0, sizeof(*h));
	h->role = role;
	h->seq = seq;
	h->epoch = 0x1234567890abcdefULL;
	memset(h->uuid, 0xa5, DMR_UUID_SIZE);
	h->state = DMR_STATE_RUNNING;
	h->chunk_sectors = 8;
	h->secondary_sectors = 1 << 20;
	dmr_layout_init(&h->layout, 1 << 17, 8);
}

static void header_round_trips(struct kunit *test)
{
	struct dmr_disk_header d;
	struct dmr_header h, back;
	char *error = NULL;

	make_header(&h, DMR_ROLE_ACTIVE, 7);
	h.state = DMR_STATE_DONE;
	h.commit_cursor = 99;
	dmr_header_encode(&h, &d);
	KUNIT_ASSERT_EQ(test, dmr_header_decode(&d, &back, &error), 0);
	KUNIT_EXPECT_EQ(test, back.role, DMR_ROLE_ACTIVE);
	KUNIT_EXPECT_EQ(test, back.seq, 7ULL);
	KUNIT_EXPECT_EQ(test, back.epoch, h.epoch);
	KUNIT_EXPECT_EQ(test, back.state, DMR_STATE_DONE);
	KUNIT_EXPECT_EQ(test, back.chunk_sectors, 8U);
	KUNIT_EXPECT_EQ(test, back.secondary_sectors, 1ULL << 20);
	KUNIT_EXPECT_EQ(test, back.layout.nr_slots, h.layout.nr_slots);
	KUNIT_EXPECT_EQ(test, back.layout.data_start, h.layout.data_start);
	KUNIT_EXPECT_EQ(test, back.commit_cursor, 99ULL);
	KUNIT_EXPECT_EQ(test, memcmp(back.uuid, h.uuid, DMR_UUID_SIZE), 0);
	KUNIT_EXPECT_EQ(test, le32_to_cpu(d.magic), DMR_MAGIC);
	KUNIT_EXPECT_NULL(test, error);
}

/* Each corruption, re-checksummed or not, and the reason it gives. */
struct header_case {
	const char *name;
	void (*corrupt)(struct dmr_disk_header *d);
	bool fix_csum;
	const char *error;
};

static void hc_magic(struct dmr_disk_header *d)
{
	d->magic = cpu_to_le32(0xdeadbeef);
}

static void hc_flip(struct dmr_disk_header *d)
{
	d->epoch ^= cpu_to_le64(1);
}

static void hc_version(struct dmr_disk_header *d)
{
	d->version = cpu_to_le32(2);
}

static void hc_role(struct dmr_disk_header *d)
{
	d->role = cpu_to_le32(3);
}

static void hc_state(struct dmr_disk_header *d)
{
	d->state = cpu_to_le32(DMR_NR_STATES);
}

static void hc_seq(struct dmr_disk_header *d)
{
	d->seq = 0;
}

static void hc_seq_max(struct dmr_disk_header *d)
{
	d->seq = cpu_to_le64(U64_MAX);
}

static void hc_epoch(struct dmr_disk_header *d)
{
	d->epoch = 0;
}

static void hc_chunk(struct dmr_disk_header *d)
{
	d->chunk_sectors = cpu_to_le32(12);
}

static void hc_layout(struct dmr_disk_header *d)
{
	d->data_start = cpu_to_le64(le64_to_cpu(d->data_start) + 8);
}

static void hc_slots(struct dmr_disk_header *d)
{
	d->nr_slots = 0;
}

static const struct header_case header_cases[] = {
	{ "magic", hc_magic, true,
	  "Store header has a wrong magic: not a dm-replication store" },
	{ "checksum", hc_flip, false, "Store header has a bad checksum" },
	{ "version", hc_version, true, "Store header has an unsupported version" },
	{ "role", hc_role, true, "Store header has an unknown role" },
	{ "state", hc_state, true, "Store header has an unknown state" },
	{ "seq", hc_seq, true, "Store header has a zero generation or epoch" },
	{ "seq max", hc_seq_max, true, "Store header has an exhausted generation" },
	{ "epoch", hc_epoch, true, "Store header has a zero generation or epoch" },
	{ "chunk", hc_chunk, true, "Store header has an invalid chunk size" },
	{ "layout", hc_layout, true, "Store header has an invalid layout" },
	{ "slots", hc_slots, true, "Store header has an invalid layout" },
};

static void header_rejects_each_corruption(struct kunit *test)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(header_cases); i++) {
		const struct header_case *c = &header_cases[i];
		struct dmr_disk_header d;
		struct dmr_header h;
		char *error = NULL;

		make_header(&h, DMR_ROLE_HIDDEN, 3);
		dmr_header_encode(&h, &d);
		c->corrupt(&d);
		if (c->fix_csum)
			d.csum = cpu_to_le32(crc32c(~0U, (u8 *)&d + 4,
						    sizeof(d) - 4));
		KUNIT_EXPECT_EQ_MSG(test, dmr_header_decode(&d, &h, &error),
				    -EINVAL, "case %s", c->name);
		KUNIT_EXPECT_STREQ_MSG(test, error, c->error, "case %s",
				       c->name);
	}
}

/* Regression: a commit cursor past the target's end was accepted. */
static void header_refuses_cursor_past_the_end(struct kunit *test)
{
	struct dmr_disk_header *d = kunit_kmalloc(test, sizeof(*d), GFP_KERNEL);
	struct dmr_header h, back;
	char *error = NULL;
	u64 nr_chunks;

	KUNIT_ASSERT_NOT_NULL(test, d);
	memset(&h, 0, sizeof(h));
	h.role = DMR_ROLE_HIDDEN;
	h.seq = 9;
	h.epoch = 0x1234567890abcdefULL;
	h.state = DMR_STATE_FAILOVER;
	h.chunk_sectors = 8;
	h.secondary_sectors = (1 << 20) + 1;	/* the last chunk is partial */
	nr_chunks = (1 << 17) + 1;
	dmr_layout_init(&h.layout, 1 << 17, 8);

	h.commit_cursor = nr_chunks;		/* all merged: valid */
	dmr_header_encode(&h, d);
	KUNIT_EXPECT_EQ(test, dmr_header_decode(d, &back, &error), 0);
	KUNIT_EXPECT_EQ(test, back.commit_cursor, nr_chunks);

	h.commit_cursor = nr_chunks + 1;
	dmr_header_encode(&h, d);
	KUNIT_EXPECT_EQ(test, dmr_header_decode(d, &back, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Store header has a commit cursor past the target's end");

	/* No overflow in rounding a length near U64_MAX up to chunks. */
	h.secondary_sectors = U64_MAX;
	h.commit_cursor = U64_MAX / 8 + 1;
	dmr_header_encode(&h, d);
	KUNIT_EXPECT_EQ(test, dmr_header_decode(d, &back, &error), 0);
	h.commit_cursor = U64_MAX;
	dmr_header_encode(&h, d);
	KUNIT_EXPECT_EQ(test, dmr_header_decode(d, &back, &error), -EINVAL);
}

static void *header_area(struct kunit *test)
{
	void *area = kunit_kzalloc(test, DMR_HEADER_SECTORS << SECTOR_SHIFT,
				   GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, area);
	return area;
}

static void pick_blank_and_newest(struct kunit *test)
{
	struct dmr_disk_header *d = header_area(test);
	struct dmr_header h, out;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), 1);

	make_header(&h, DMR_ROLE_HIDDEN, 1);	/* seq 1 goes to copy B */
	dmr_header_encode(&h, &d[1]);
	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), 0);
	KUNIT_EXPECT_EQ(test, out.seq, 1ULL);

	h.seq = 2;
	h.epoch++;
	dmr_header_encode(&h, &d[0]);
	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), 0);
	KUNIT_EXPECT_EQ(test, out.seq, 2ULL);
	KUNIT_EXPECT_EQ(test, out.epoch, h.epoch);

	/* Anything in the rest of the first 4 KiB is not blank either. */
	memset(d, 0, DMR_HEADER_SECTORS << SECTOR_SHIFT);
	((u8 *)d)[4000] = 1;
	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Store header has a wrong magic: not a dm-replication store");
}

static void pick_survives_a_torn_copy(struct kunit *test)
{
	struct dmr_disk_header *d = header_area(test);
	struct dmr_header h, out;
	char *error = NULL;

	make_header(&h, DMR_ROLE_ACTIVE, 3);
	dmr_header_encode(&h, &d[1]);
	h.seq = 4;
	h.epoch++;
	dmr_header_encode(&h, &d[0]);
	/* The write of generation 4 was torn: its copy is half garbage. */
	memset((u8 *)&d[0] + 100, 0x5a, 200);
	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), 0);
	KUNIT_EXPECT_EQ(test, out.seq, 3ULL);
	KUNIT_EXPECT_EQ(test, out.epoch, h.epoch - 1);

	/* Both torn: refused, with the reason. */
	memset((u8 *)&d[1] + 100, 0x5a, 200);
	KUNIT_EXPECT_EQ(test, dmr_header_pick(d, &out, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Store header has a bad checksum");
}

static void check_matches_the_table(struct kunit *test)
{
	struct dmr_header h;
	char *error = NULL;
	u64 dev = 1 << 17;

	make_header(&h, DMR_ROLE_HIDDEN, 1);
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_HIDDEN, 8, 1 << 20,
					       dev, &error), 0);
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_ACTIVE, 8, 1 << 20,
					       dev, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Active device holds a hidden store: devices swapped?");
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_HIDDEN, 16, 1 << 20,
					       dev, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden store was made with another chunk size");
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_HIDDEN, 8, 1 << 19,
					       dev, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden store was made for another target length");
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_HIDDEN, 8, 1 << 20,
					       dev - 8, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden device is smaller than its store's header says");
	/* A device that grew is fine: the header's layout still fits. */
	KUNIT_EXPECT_EQ(test, dmr_header_check(&h, DMR_ROLE_HIDDEN, 8, 1 << 20,
					       dev * 2, &error), 0);
}

static void reconcile_decides_format_resume_or_refusal(struct kunit *test)
{
	struct dmr_header hh, ah;
	enum dmr_load_action action;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(1, &hh, 1, &ah, &action,
						    &error), 0);
	KUNIT_EXPECT_EQ(test, action, DMR_LOAD_FORMAT);

	make_header(&hh, DMR_ROLE_HIDDEN, 1);
	make_header(&ah, DMR_ROLE_ACTIVE, 1);
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(0, &hh, 1, &ah, &action,
						    &error), 0);
	KUNIT_EXPECT_EQ(test, action, DMR_LOAD_FINISH_FORMAT);
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(1, &hh, 0, &ah, &action,
						    &error), 0);
	KUNIT_EXPECT_EQ(test, action, DMR_LOAD_FINISH_FORMAT);

	hh.seq = 5;
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(0, &hh, 1, &ah, &action,
						    &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Active store is blank, hidden is not: zero both to start anew");
	ah.seq = 5;
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(1, &hh, 0, &ah, &action,
						    &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden store is blank, active is not: zero both to start anew");

	/* A crash between the two header writes: the newer one wins. */
	hh.seq = 6;
	hh.epoch++;
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(0, &hh, 0, &ah, &action,
						    &error), 0);
	KUNIT_EXPECT_EQ(test, action, DMR_LOAD_RESUME);

	ah.seq = 6;
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(0, &hh, 0, &ah, &action,
						    &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden and active stores disagree at the same generation");

	ah.epoch = hh.epoch;
	ah.uuid[0] ^= 1;
	KUNIT_EXPECT_EQ(test, dmr_headers_reconcile(0, &hh, 0, &ah, &action,
						    &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Hidden and active stores belong to different sessions");
}

static void records_are_live_only_in_their_epoch(struct kunit *test)
{
	struct dmr_disk_record r = {
		.chunk = cpu_to_le64(41),
		.epoch = cpu_to_le64(7),
	};
	struct dmr_disk_record zero = { 0 };
	u32 chunk = 0;

	KUNIT_EXPECT_TRUE(test, dmr_record_live(&r, 7, 100, &chunk));
	KUNIT_EXPECT_EQ(test, chunk, 41U);
	KUNIT_EXPECT_FALSE(test, dmr_record_live(&r, 8, 100, &chunk));
	KUNIT_EXPECT_FALSE(test, dmr_record_live(&r, 6, 100, &chunk));
	KUNIT_EXPECT_FALSE(test, dmr_record_live(&r, 7, 41, &chunk));
	/*
	 * A zeroed block holds no live records, since no epoch is 0: headers
	 * with epoch 0 are refused (header_rejects_each_corruption).
	 */
	KUNIT_EXPECT_FALSE(test, dmr_record_live(&zero, 7, 100, &chunk));
}

/* ---- the state machine ---------------------------------------------------- */

static void state_machine_follows_qemu(struct kunit *test)
{
	static const struct {
		enum dmr_state state;
		enum dmr_action act[3];	/* checkpoint, stop, failover */
	} rules[] = {
		{ DMR_STATE_RUNNING,
		  { DMR_ACT_CHECKPOINT, DMR_ACT_STOP, DMR_ACT_FAILOVER } },
		{ DMR_STATE_FAILOVER,
		  { DMR_ACT_NOTHING, DMR_ACT_NOTHING, DMR_ACT_NOTHING } },
		{ DMR_STATE_FAILOVER_FAILED,
		  { DMR_ACT_REFUSE, DMR_ACT_REFUSE, DMR_ACT_FAILOVER } },
		{ DMR_STATE_DONE,
		  { DMR_ACT_NOTHING, DMR_ACT_NOTHING, DMR_ACT_NOTHING } },
	};
	unsigned int i, m;

	for (i = 0; i < ARRAY_SIZE(rules); i++)
		for (m = 0; m < 3; m++)
			KUNIT_EXPECT_EQ_MSG(test,
					    dmr_msg_action(rules[i].state, m),
					    rules[i].act[m], "state %s msg %u",
					    dmr_state_name(rules[i].state), m);
	KUNIT_EXPECT_EQ(test, dmr_msg_action(DMR_NR_STATES, DMR_MSG_STOP),
			DMR_ACT_REFUSE);
	/* The commit depth may be set in every state. */
	for (i = 0; i < ARRAY_SIZE(rules); i++)
		KUNIT_EXPECT_EQ(test, dmr_msg_action(rules[i].state,
						     DMR_MSG_COMMIT_DEPTH),
				DMR_ACT_COMMIT_DEPTH);
}

/* ---- the in-core store: map, allocator, epoch switch ----------------------- */

static struct dmr_store *store_for_test(struct kunit *test, u64 slots)
{
	struct dmr_layout l = {
		.meta_start = DMR_HEADER_SECTORS,
		.meta_blocks = DIV_ROUND_UP(slots, DMR_RECORDS_PER_BLOCK),
		.nr_slots = slots,
	};
	struct dmr_store *st = dmr_store_create("test", DMR_ROLE_ACTIVE, &l, 8);

	KUNIT_ASSERT_NOT_NULL(test, st);
	/* Room for a first page of single slots, as a first write makes. */
	KUNIT_ASSERT_EQ(test, dmr_store_reserve(st, 1), 0);
	return st;
}

/* Maps @chunk to @slot, with room made for the slot as a load does. */
static void insert(struct kunit *test, struct dmr_store *st, u32 chunk,
		   u32 slot, int expect)
{
	KUNIT_ASSERT_EQ(test, dmr_store_reserve(st, slot + 1), 0);
	KUNIT_EXPECT_EQ(test, dmr_store_insert(st, chunk, slot, false), expect);
}

static void store_allocates_until_full(struct kunit *test)
{
	struct dmr_store *st;
	u32 slot, i;

	st = store_for_test(test, 3);
	for (i = 0; i < 3; i++) {
		KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), 0);
		KUNIT_EXPECT_EQ(test, slot, i);
	}
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), -ENOSPC);
	KUNIT_EXPECT_EQ(test, dmr_store_used(st), 3U);
	dmr_store_destroy(st);
}

static void store_allocates_runs_whole_or_not_at_all(struct kunit *test)
{
	struct dmr_store *st;
	u32 first = 99;

	st = store_for_test(test, 30);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 100, 4, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 0U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 4U);
	/* A run of DMR_RUN_MIN or more takes group entries, not singles. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 200, 20, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 5U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 300, 4, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 25U);
	/* One slot left: a run of two takes nothing. */
	first = 99;
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 400, 2, &first), -ENOSPC);
	KUNIT_EXPECT_EQ(test, first, 99U);
	KUNIT_EXPECT_EQ(test, dmr_store_used(st), 29U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 400, 1, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 29U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 401, 1, &first), -ENOSPC);
	dmr_store_destroy(st);
}

/* Steps of a commit that succeed, and look at the store while it runs. */
static bool clean_in_commit;

static int probe_flush(struct dmr_store *st)
{
	clean_in_commit = dmr_store_clean(st);
	return 0;
}

static int probe_write_record(struct dmr_store *st, u64 epoch,
			      const struct dmr_pending *p)
{
	return 0;
}

static int probe_write_dirty(struct dmr_store *st)
{
	return 0;
}

static const struct dmr_store_io probe_store_io = {
	.flush = probe_flush,
	.write_record = probe_write_record,
	.write_dirty = probe_write_dirty,
};

static void store_is_clean_without_records_or_commit(struct kunit *test)
{
	struct dmr_pending p = { .chunk = 3, .slot = 0 };
	struct llist_node *list;
	struct dmr_store *st;
	int err;

	st = store_for_test(test, 10);
	dmr_store_set_io(st, &probe_store_io);
	KUNIT_EXPECT_TRUE(test, dmr_store_clean(st));
	dmr_store_queue(st, &p);
	KUNIT_EXPECT_FALSE(test, dmr_store_clean(st));
	/* A commit has taken the record and is writing it: not clean. */
	clean_in_commit = true;
	list = dmr_store_commit(st, true, &err);
	KUNIT_EXPECT_EQ(test, err, 0);
	KUNIT_EXPECT_PTR_EQ(test, list, &p.node);
	KUNIT_EXPECT_FALSE(test, clean_in_commit);
	KUNIT_EXPECT_TRUE(test, dmr_store_clean(st));
	dmr_store_destroy(st);
}

/*
 * A commit whose step @fail_at (1: the data flush, 2: a record, 3: the dirty
 * blocks, 4: the records' flush) fails; @calls counts every step called.
 */
struct fake_io {
	int step;
	int fail_at;
	int calls;
	int records;
	int block_ret;		/* what write_block returns */
	int blocks;		/* write_block calls */
	unsigned int block_records;	/* records it was given */
};

static struct fake_io *fake;

static int fake_step(int step)
{
	fake->calls++;
	fake->step = step;
	return step == fake->fail_at ? -EIO : 0;
}

static int fake_flush(struct dmr_store *st)
{
	/* The first flush is step 1, the one after the blocks step 4. */
	return fake_step(fake->step >= 3 ? 4 : 1);
}

static int fake_write_record(struct dmr_store *st, u64 epoch,
			     const struct dmr_pending *p)
{
	fake->records++;
	return fake_step(2);
}

static int fake_write_dirty(struct dmr_store *st)
{
	return fake_step(3);
}

static const struct dmr_store_io fake_store_io = {
	.flush = fake_flush,
	.write_record = fake_write_record,
	.write_dirty = fake_write_dirty,
};

/* Queues three records of mapped chunks, not durable yet. */
static void queue_records(struct kunit *test, struct dmr_store *st,
			  struct dmr_pending *p)
{
	u32 i, slot;

	for (i = 0; i < 3; i++) {
		KUNIT_ASSERT_EQ(test, dmr_store_alloc_slot(st, &slot), 0);
		KUNIT_ASSERT_EQ(test,
				dmr_store_insert(st, 10 + i, slot, false), 0);
		p[i] = (struct dmr_pending){ .chunk = 10 + i, .slot = slot,
					     .mapped = true };
		dmr_store_queue(st, &p[i]);
	}
}

/* A store on the fake steps @ops of @io, with queue_records()'s three. */
static struct dmr_store *fake_store(struct kunit *test, struct fake_io *io,
				    const struct dmr_store_io *ops,
				    struct dmr_pending *p)
{
	struct dmr_store *st;

	fake = io;
	st = store_for_test(test, 10);
	dmr_store_set_io(st, ops);
	queue_records(test, st, p);
	return st;
}

/* Are queue_records()'s three mappings durable, as @durable says? */
static void expect_durable(struct kunit *test, struct dmr_store *st,
			   bool durable)
{
	u32 i;

	for (i = 0; i < 3; i++)
		KUNIT_EXPECT_EQ(test, dmr_store_lookup_durable(st, 10 + i),
				durable);
}

static unsigned int list_len(struct llist_node *list)
{
	unsigned int n = 0;

	for (; list; list = list->next)
		n++;
	return n;
}

static void store_commit_fails_for_good_at_each_step(struct kunit *test)
{
	struct dmr_pending p[3], q;
	struct dmr_store *st;
	struct fake_io io;
	struct llist_node *list;
	int step, err;

	for (step = 0; step <= 4; step++) {
		io = (struct fake_io){ .fail_at = step };
		st = fake_store(test, &io, &fake_store_io, p);

		list = dmr_store_commit(st, true, &err);
		KUNIT_EXPECT_EQ(test, list_len(list), 3U);
		KUNIT_EXPECT_FALSE(test, dmr_store_has_pending(st));
		/* Every step ran, in order, up to the one that failed. */
		KUNIT_EXPECT_EQ(test, io.step, step ? step : 4);
		KUNIT_EXPECT_EQ(test, io.records, step == 1 ? 0 : step == 2 ? 1 : 3);
		expect_durable(test, st, !step);
		if (!step) {
			KUNIT_EXPECT_EQ(test, err, 0);
			KUNIT_EXPECT_FALSE(test, dmr_store_failed(st));
			KUNIT_EXPECT_TRUE(test, dmr_store_clean(st));
			dmr_store_destroy(st);
			continue;
		}
		KUNIT_EXPECT_EQ(test, err, -EIO);
		KUNIT_EXPECT_TRUE(test, dmr_store_failed(st));
		/* The bug of issue 10: a failed store must never look clean. */
		KUNIT_EXPECT_FALSE(test, dmr_store_clean(st));

		/* Later commits, with records or without, write nothing. */
		io.fail_at = 0;
		io.calls = 0;
		q = (struct dmr_pending){ .chunk = 20, .slot = 5 };
		dmr_store_queue(st, &q);
		list = dmr_store_commit(st, true, &err);
		KUNIT_EXPECT_PTR_EQ(test, list, &q.node);
		KUNIT_EXPECT_EQ(test, err, -EIO);
		list = dmr_store_commit(st, true, &err);
		KUNIT_EXPECT_NULL(test, list);
		KUNIT_EXPECT_EQ(test, err, -EIO);
		KUNIT_EXPECT_EQ(test, io.calls, 0);
		KUNIT_EXPECT_FALSE(test, dmr_store_clean(st));
		dmr_store_destroy(st);
	}
	fake = NULL;
}

static int fake_write_block(struct dmr_store *st, u64 epoch,
			    struct llist_node *list)
{
	fake->blocks++;
	fake->block_records = list_len(list);
	return fake->block_ret;
}

static const struct dmr_store_io fake_block_io = {
	.flush = fake_flush,
	.write_record = fake_write_record,
	.write_dirty = fake_write_dirty,
	.write_block = fake_write_block,
};

/*
 * A commit whose records lie in one block is one write: the steps are not
 * run unless the write declines (-EAGAIN); its error fails the store.
 */
static void store_commit_in_one_write(struct kunit *test)
{
	static const int rets[] = { 0, -EAGAIN, -EIO };
	struct dmr_pending p[3];
	struct llist_node *list;
	struct dmr_store *st;
	struct fake_io io;
	int k, err;

	for (k = 0; k < ARRAY_SIZE(rets); k++) {
		io = (struct fake_io){ .block_ret = rets[k] };
		st = fake_store(test, &io, &fake_block_io, p);

		list = dmr_store_commit(st, true, &err);
		KUNIT_EXPECT_EQ(test, list_len(list), 3U);
		KUNIT_EXPECT_EQ(test, io.blocks, 1);
		KUNIT_EXPECT_EQ(test, io.block_records, 3U);
		/*
		 * The steps (a flush, 3 records, the blocks, a flush) run
		 * only when the one write declines.
		 */
		KUNIT_EXPECT_EQ(test, io.calls, rets[k] == -EAGAIN ? 6 : 0);
		KUNIT_EXPECT_EQ(test, err, rets[k] == -EIO ? -EIO : 0);
		KUNIT_EXPECT_EQ(test, dmr_store_failed(st), rets[k] == -EIO);
		KUNIT_EXPECT_EQ(test, dmr_store_clean(st), rets[k] != -EIO);
		expect_durable(test, st, rets[k] != -EIO);

		/* With nothing pending, a commit only flushes. */
		io.blocks = 0;
		io.calls = 0;
		KUNIT_EXPECT_NULL(test, dmr_store_commit(st, true, &err));
		KUNIT_EXPECT_EQ(test, io.blocks, 0);
		KUNIT_EXPECT_EQ(test, io.calls, rets[k] == -EIO ? 0 : 1);
		dmr_store_destroy(st);
	}
	fake = NULL;
}

static void store_flush_failure_without_records_fails_the_store(struct kunit *test)
{
	struct fake_io io = { .fail_at = 1 };
	struct dmr_store *st;
	int err;

	fake = &io;
	st = store_for_test(test, 10);
	dmr_store_set_io(st, &fake_store_io);
	KUNIT_EXPECT_NULL(test, dmr_store_commit(st, true, &err));
	KUNIT_EXPECT_EQ(test, err, -EIO);
	KUNIT_EXPECT_FALSE(test, dmr_store_clean(st));
	io.fail_at = 0;
	KUNIT_EXPECT_NULL(test, dmr_store_commit(st, true, &err));
	KUNIT_EXPECT_EQ(test, err, -EIO);
	KUNIT_EXPECT_EQ(test, io.calls, 1);
	dmr_store_destroy(st);
	fake = NULL;
}

static void store_maps_chunks(struct kunit *test)
{
	struct dmr_store *st;
	u32 slot, i;

	st = store_for_test(test, 5000);
	for (i = 0; i < 5000; i++)
		insert(test, st, i * 7919 % 100003, i, 0);
	insert(test, st, 7919, 1, -EEXIST);
	KUNIT_EXPECT_EQ(test, dmr_store_nr_mapped(st), 5000);
	for (i = 0; i < 5000; i++) {
		KUNIT_EXPECT_TRUE(test, dmr_store_lookup(st, i * 7919 % 100003,
							 &slot));
		KUNIT_EXPECT_EQ(test, slot, i);
	}
	KUNIT_EXPECT_FALSE(test, dmr_store_lookup(st, 1, &slot));
	dmr_store_destroy(st);
}

static void store_reset_empties_everything(struct kunit *test)
{
	struct llist_node *discarded;
	struct dmr_pending p = { .chunk = 3, .slot = 0 };
	struct dmr_store *st;
	u32 slot;

	st = store_for_test(test, 10);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), 0);
	insert(test, st, 3, slot, 0);
	dmr_store_queue(st, &p);

	KUNIT_ASSERT_EQ(test, dmr_store_prepare_reset(st), 0);
	dmr_store_reset(st, 42, &discarded);
	KUNIT_EXPECT_PTR_EQ(test, discarded, &p.node);
	KUNIT_EXPECT_FALSE(test, dmr_store_has_pending(st));
	KUNIT_EXPECT_EQ(test, dmr_store_epoch(st), 42ULL);
	KUNIT_EXPECT_EQ(test, dmr_store_used(st), 0U);
	KUNIT_EXPECT_EQ(test, dmr_store_nr_mapped(st), 0);
	KUNIT_EXPECT_FALSE(test, dmr_store_lookup(st, 3, &slot));
	/* The same chunk may be mapped again in the new epoch. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), -EAGAIN);
	KUNIT_ASSERT_EQ(test, dmr_store_reserve(st, 1), 0);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), 0);
	KUNIT_EXPECT_EQ(test, slot, 0U);
	insert(test, st, 3, slot, 0);
	dmr_store_destroy(st);
}

/* ---- the failover's merge: plan, extents, routes, progress ----------------- */

static void plan_sorts_dedups_and_skips_merged(struct kunit *test)
{
	/* Active's chunks, then hidden's: 5 and 9 are in both. */
	u32 chunks[] = { 9, 2, 5, 40, 5, 7, 9, 1, 0 };
	static const u32 want[] = { 5, 7, 9, 40 };
	u32 n, i;

	n = dmr_plan_finish(chunks, ARRAY_SIZE(chunks), 5);
	KUNIT_ASSERT_EQ(test, n, (u32)ARRAY_SIZE(want));
	for (i = 0; i < n; i++)
		KUNIT_EXPECT_EQ(test, chunks[i], want[i]);
	KUNIT_EXPECT_EQ(test, dmr_plan_finish(chunks, 0, 0), 0U);
	/* A cursor past everything leaves nothing to merge. */
	n = dmr_plan_finish(chunks, 4, 41);
	KUNIT_EXPECT_EQ(test, n, 0U);
}

static int cmp_u32(const void *a, const void *b)
{
	u32 x = *(const u32 *)a, y = *(const u32 *)b;

	return x < y ? -1 : x > y;
}

/* The radix sort against sort(), on sizes and value ranges of every kind. */
static void sort_unique_matches_sort(struct kunit *test)
{
	static const u32 sizes[] = { 1, 2, 3, 255, 256, 257, 4096, 70000 };
	static const u32 ranges[] = { 1, 7, 256, 65536, 1U << 24, U32_MAX };
	u32 *v, *ref, i, j, k, n, n_ref, mask;
	struct rnd_state rnd;

	prandom_seed_state(&rnd, 15);
	v = kunit_kmalloc_array(test, 70000, sizeof(*v), GFP_KERNEL);
	ref = kunit_kmalloc_array(test, 70000, sizeof(*ref), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, v);
	KUNIT_ASSERT_NOT_NULL(test, ref);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		for (j = 0; j < ARRAY_SIZE(ranges); j++) {
			n = sizes[i];
			mask = ranges[j];
			for (k = 0; k < n; k++)
				v[k] = prandom_u32_state(&rnd) % ((u64)mask + 1);
			/* Runs already in order, as sequential fills give. */
			if (j & 1)
				for (k = 0; k < n / 2; k++)
					v[k] = k & mask;
			memcpy(ref, v, n * sizeof(*v));
			sort(ref, n, sizeof(*ref), cmp_u32, NULL);
			for (k = 0, n_ref = 0; k < n; k++)
				if (!n_ref || ref[n_ref - 1] != ref[k])
					ref[n_ref++] = ref[k];
			KUNIT_ASSERT_EQ_MSG(test, dmr_sort_unique(v, n), n_ref,
					    "%u values up to %u", n, mask);
			KUNIT_ASSERT_EQ_MSG(test, memcmp(v, ref, n_ref * sizeof(*v)), 0,
					    "%u values up to %u", n, mask);
		}
	}
	KUNIT_EXPECT_EQ(test, dmr_sort_unique(v, 0), 0U);
}

/* A fake pair of stores: the source of chunk c is table[c], 0 for none. */
struct fake_source {
	enum dmr_role store[32];
	u32 slot[32];
};

static bool fake_source(void *ctx, u32 chunk, enum dmr_role *store,
			u32 *slot)
{
	struct fake_source *f = ctx;

	if (chunk >= 32 || !f->store[chunk])
		return false;
	*store = f->store[chunk];
	*slot = f->slot[chunk];
	return true;
}

static void plan_extents_follow_slots_and_stores(struct kunit *test)
{
	struct fake_source f = {};
	u32 plan[] = { 1, 2, 3, 4, 6, 7, 8, 9, 10, 11 };
	u32 n = ARRAY_SIZE(plan), c;

	/* 1-4: active slots 10-13; 6-8 active 14,15 then 20; 9-11 hidden 0-2. */
	for (c = 1; c <= 4; c++) {
		f.store[c] = DMR_ROLE_ACTIVE;
		f.slot[c] = 9 + c;
	}
	f.store[6] = DMR_ROLE_ACTIVE;
	f.slot[6] = 14;
	f.store[7] = DMR_ROLE_ACTIVE;
	f.slot[7] = 15;
	f.store[8] = DMR_ROLE_ACTIVE;
	f.slot[8] = 20;
	for (c = 9; c <= 11; c++) {
		f.store[c] = DMR_ROLE_HIDDEN;
		f.slot[c] = c - 9;
	}

	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 0, 256, fake_source, &f),
			4U);	/* 1-4: the gap at 5 ends it */
	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 4, 256, fake_source, &f),
			2U);	/* 6-7: slot 20 is not 16 */
	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 6, 256, fake_source, &f),
			1U);	/* 8: 9 is in hidden */
	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 7, 256, fake_source, &f),
			3U);	/* 9-11: to the plan's end */
	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 0, 3, fake_source, &f),
			3U);	/* at most max */
	KUNIT_EXPECT_EQ(test, dmr_plan_extent(plan, n, 0, 1, fake_source, &f),
			1U);
}

static void routes_of_reads(struct kunit *test)
{
	/* Merged durably: the secondary device, whatever the stores hold. */
	KUNIT_EXPECT_EQ(test, dmr_route_read(4, 5, true, true),
			DMR_ROUTE_SECONDARY);
	KUNIT_EXPECT_EQ(test, dmr_route_read(5, 5, true, true),
			DMR_ROUTE_ACTIVE);
	KUNIT_EXPECT_EQ(test, dmr_route_read(5, 5, false, true),
			DMR_ROUTE_HIDDEN);
	KUNIT_EXPECT_EQ(test, dmr_route_read(5, 5, false, false),
			DMR_ROUTE_SECONDARY);
}

static void routes_of_writes(struct kunit *test)
{
	const enum dmr_state fo = DMR_STATE_FAILOVER;
	const enum dmr_state ff = DMR_STATE_FAILOVER_FAILED;

	/* durable 10, started 20 */
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 9, 10, 20, true, true),
			DMR_ROUTE_SECONDARY);
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 10, 10, 20, true, false),
			DMR_ROUTE_WAIT);
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 19, 10, 20, false, true),
			DMR_ROUTE_WAIT);
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 15, 10, 20, false, false),
			DMR_ROUTE_SECONDARY);	/* in no store: not merged */
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 20, 10, 20, true, true),
			DMR_ROUTE_ACTIVE);
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 20, 10, 20, false, true),
			DMR_ROUTE_HIDDEN);
	KUNIT_EXPECT_EQ(test, dmr_route_write(fo, 99, 10, 20, false, false),
			DMR_ROUTE_SECONDARY);

	/* After a failure, QEMU's rule: nothing waits. */
	KUNIT_EXPECT_EQ(test, dmr_route_write(ff, 9, 10, 10, true, true),
			DMR_ROUTE_SECONDARY);
	KUNIT_EXPECT_EQ(test, dmr_route_write(ff, 10, 10, 10, true, true),
			DMR_ROUTE_ACTIVE);
	KUNIT_EXPECT_EQ(test, dmr_route_write(ff, 10, 10, 10, false, true),
			DMR_ROUTE_COPY_UP);
	KUNIT_EXPECT_EQ(test, dmr_route_write(ff, 10, 10, 10, false, false),
			DMR_ROUTE_SECONDARY);
}

static void cursor_stops_at_the_first_extent_not_copied(struct kunit *test)
{
	struct dmr_extent e[3] = {
		{ .first = 3, .nr = 2 },
		{ .first = 8, .nr = 4 },
		{ .first = 12, .nr = 1 },
	};
	unsigned int nr_ext, i;
	LIST_HEAD(list);
	u32 nr;

	for (i = 0; i < 3; i++)
		list_add_tail(&e[i].list, &list);

	/* Nothing copied: the cursor stays at the first extent. */
	KUNIT_EXPECT_EQ(test, dmr_commit_cursor(&list, 13, &nr, &nr_ext), 3ULL);
	KUNIT_EXPECT_EQ(test, nr, 0U);
	KUNIT_EXPECT_EQ(test, nr_ext, 0U);
	/* Copied out of order: the gap holds the cursor. */
	e[1].done = true;
	e[2].done = true;
	KUNIT_EXPECT_EQ(test, dmr_commit_cursor(&list, 13, &nr, &nr_ext), 3ULL);
	e[0].done = true;
	KUNIT_EXPECT_EQ(test, dmr_commit_cursor(&list, 13, &nr, &nr_ext), 13ULL);
	KUNIT_EXPECT_EQ(test, nr, 7U);
	KUNIT_EXPECT_EQ(test, nr_ext, 3U);
	e[2].done = false;
	KUNIT_EXPECT_EQ(test, dmr_commit_cursor(&list, 13, &nr, &nr_ext), 12ULL);
	KUNIT_EXPECT_EQ(test, nr, 6U);
	KUNIT_EXPECT_EQ(test, nr_ext, 2U);
	/* No extent claimed: the cursor is where claiming stopped. */
	INIT_LIST_HEAD(&list);
	KUNIT_EXPECT_EQ(test, dmr_commit_cursor(&list, 42, &nr, &nr_ext), 42ULL);
}

static void store_collect_lists_every_chunk(struct kunit *test)
{
	u32 *chunks = kunit_kcalloc(test, 5000, sizeof(u32), GFP_KERNEL);
	struct dmr_store *st;
	u32 n, i;

	KUNIT_ASSERT_NOT_NULL(test, chunks);
	st = store_for_test(test, 5000);
	for (i = 0; i < 5000; i++)
		insert(test, st, i * 7919 % 100003, i, 0);
	KUNIT_EXPECT_EQ(test, dmr_store_collect(st, chunks, 5000, &n), 0);
	KUNIT_ASSERT_EQ(test, n, 5000U);
	n = dmr_plan_finish(chunks, n, 0);
	KUNIT_EXPECT_EQ(test, n, 5000U);
	for (i = 1; i < n; i++)
		KUNIT_EXPECT_LT(test, chunks[i - 1], chunks[i]);
	/* Less room than chunks is an error, not an overflow. */
	KUNIT_EXPECT_EQ(test, dmr_store_collect(st, chunks, 4999, &n), -EIO);
	dmr_store_destroy(st);
}

/*
 * The dense map: slots only below the room it made, growth of its index
 * under a million chunks, the durable bit and the order of the slots kept
 * through every growth, misses among hits, and the largest store (no tag).
 */
static void store_map_makes_room_before_slots(struct kunit *test)
{
	struct dmr_store *st = store_for_test(test, 100000);
	u32 slot, first, used;

	/* A first reserve made room for dozens of single slots. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 0, 7, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 0U);
	/* Then the allocator stops where the room ends, and takes nothing. */
	while (!dmr_store_alloc_slot(st, &slot))
		;
	used = dmr_store_used(st);
	KUNIT_EXPECT_GE(test, used, 32U);
	KUNIT_EXPECT_LT(test, used, 100000U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), -EAGAIN);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 0, 7, &first), -EAGAIN);
	KUNIT_EXPECT_EQ(test, dmr_store_used(st), used);
	KUNIT_EXPECT_EQ(test, dmr_store_reserve(st, 7), 0);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 0, 7, &first), 0);
	KUNIT_EXPECT_EQ(test, first, used);
	/* Runs need no single slots' room, only their group entries'. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 0, 3000, &first), 0);
	KUNIT_EXPECT_EQ(test, first, used + 7);
	/* More entries than even a growth at half full (a worker's) makes. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 1U << 20, 10000, &first),
			-EAGAIN);
	/* A failed run makes singles wait for a reserve, which makes room. */
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), -EAGAIN);
	KUNIT_EXPECT_EQ(test, dmr_store_reserve(st, 1), 0);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 1U << 20, 10000, &first),
			0);
	KUNIT_EXPECT_EQ(test, first, used + 3007);
	/* Room is never made past the store: -ENOSPC at its end. */
	KUNIT_EXPECT_EQ(test, dmr_store_reserve(st, 200000), 0);
	used = dmr_store_used(st);
	while (used < 100000 && !dmr_store_alloc_slot(st, &slot))
		used++;
	KUNIT_EXPECT_EQ(test, used, 100000U);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_slot(st, &slot), -ENOSPC);
	KUNIT_EXPECT_EQ(test, dmr_store_alloc_run(st, 0, 8, &first), -ENOSPC);
	dmr_store_destroy(st);
}

/*
 * Distinct chunks, scattered: i times an odd number, modulo 2^32.  Neither
 * U32_MAX nor a chunk + 1 is among the first 2^28 (that takes i + 244002641).
 */
static u32 scattered(u32 i)
{
	return i * 2654435761U;
}

static void store_map_grows_and_keeps_every_mapping(struct kunit *test)
{
	const u32 n = 120000;
	struct dmr_pending *p = kunit_kcalloc(test, n / 3 + 1, sizeof(*p),
					      GFP_KERNEL);
	u32 *chunks = kunit_kcalloc(test, n, sizeof(u32), GFP_KERNEL);
	struct dmr_store *st = store_for_test(test, n);
	u32 i, slot, got;
	int err;

	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_ASSERT_NOT_NULL(test, chunks);
	dmr_store_set_io(st, &fake_store_io);
	for (i = 0; i < n; i++) {
		u32 c = scattered(i);

		if (dmr_store_alloc_slot(st, &slot) == -EAGAIN) {
			KUNIT_ASSERT_EQ(test, dmr_store_reserve(st, 1), 0);
			KUNIT_ASSERT_EQ(test, dmr_store_alloc_slot(st, &slot), 0);
		}
		KUNIT_ASSERT_EQ(test, slot, i);
		KUNIT_ASSERT_EQ(test, dmr_store_insert(st, c, slot, false), 0);
		/* Every third one made durable, before later growths. */
		if (i % 3 == 0) {
			p[i / 3] = (struct dmr_pending){ .chunk = c,
							 .slot = slot,
							 .mapped = true };
			dmr_store_queue(st, &p[i / 3]);
		}
		if (i % 20000 == 0) {
			fake = &(struct fake_io){};
			/* It returns the committed list: p[] is the test's own. */
			dmr_store_commit(st, true, &err);
			fake = NULL;
			KUNIT_ASSERT_EQ(test, err, 0);
		}
	}
	KUNIT_EXPECT_EQ(test, dmr_store_nr_mapped(st), n);
	KUNIT_EXPECT_EQ(test, dmr_store_insert(st, scattered(1), n - 1, false),
			-EEXIST);
	for (i = 0; i < n; i++) {
		u32 c = scattered(i);

		KUNIT_ASSERT_TRUE(test, dmr_store_lookup(st, c, &slot));
		KUNIT_ASSERT_EQ(test, slot, i);
		/* Committed every 20000: those queued before the last one. */
		KUNIT_ASSERT_EQ(test, dmr_store_lookup_durable(st, c),
				i % 3 == 0 && i <= 100000);
		/* The neighbour of a mapped chunk is a miss. */
		KUNIT_ASSERT_FALSE(test, dmr_store_lookup(st, c + 1, &slot));
	}
	KUNIT_EXPECT_EQ(test, dmr_store_collect(st, chunks, n, &got), 0);
	KUNIT_ASSERT_EQ(test, got, n);
	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, chunks[i], scattered(i));
	dmr_store_take_pending(st);
	dmr_store_destroy(st);
}

/* Takes slots as the I/O path does: a reserve when the map asks for one. */
static u32 take_run(struct kunit *test, struct dmr_store *st, u32 chunk, u32 n)
{
	u32 first;
	int r = n == 1 ? dmr_store_alloc_slot(st, &first) :
			 dmr_store_alloc_run(st, chunk, n, &first);

	if (r == -EAGAIN) {
		KUNIT_EXPECT_EQ(test, dmr_store_reserve(st, 1), 0);
		r = n == 1 ? dmr_store_alloc_slot(st, &first) :
			     dmr_store_alloc_run(st, chunk, n, &first);
	}
	KUNIT_EXPECT_EQ(test, r, 0);
	return first;
}

/*
 * Runs in group entries beside singles: runs of 1 to 300 chunks at any
 * alignment, some mapped in part, their chunks inserted out of order, a
 * single that lands on a run's delta, durable bits set by inserts and by a
 * commit, and every chunk found at its slot, listed once, and not twice.
 */
static void store_map_keeps_runs_and_singles(struct kunit *test)
{
	const u32 nr = 400;
	u32 *chunk_of = kunit_kcalloc(test, 200000, sizeof(u32), GFP_KERNEL);
	u32 *chunks = kunit_kcalloc(test, 200000, sizeof(u32), GFP_KERNEL);
	struct dmr_pending *p = kunit_kcalloc(test, nr, sizeof(*p), GFP_KERNEL);
	struct dmr_store *st = store_for_test(test, 200000);
	u32 i, j, k, n, first, slot, next = 5, seed = 1, mapped = 0, got;
	int err;

	KUNIT_ASSERT_NOT_NULL(test, chunk_of);
	KUNIT_ASSERT_NOT_NULL(test, chunks);
	KUNIT_ASSERT_NOT_NULL(test, p);
	dmr_store_set_io(st, &fake_store_io);
	memset(chunk_of, 0xff, 200000 * sizeof(u32));
	for (i = 0; i < nr; i++) {
		seed = seed * 1103515245 + 12345;
		n = i % 3 ? (seed >> 16) % 300 + 1 : 1;
		first = take_run(test, st, next, n);
		/* Every fifth run leaves its last half unmapped. */
		k = i % 5 == 4 ? n / 2 : n;
		for (j = 0; j < k; j++) {
			/* Out of order: a stride prime to any run length. */
			u32 c = next + (j * 307) % k;

			KUNIT_ASSERT_EQ(test, dmr_store_insert(st, c,
							       first + c - next,
							       i % 2),
					0);
			chunk_of[first + c - next] = c;
			mapped++;
		}
		if (k)
			p[i] = (struct dmr_pending){ .chunk = next,
						     .slot = first,
						     .mapped = true };
		if (k && !(i % 2))
			dmr_store_queue(st, &p[i]);
		/* Gaps of 0 to 2 chunks: runs placed back to back, or not. */
		next += n + (seed >> 8) % 3;
	}
	/* A single right after a run lands on its delta: in its entry. */
	first = take_run(test, st, next, 16);
	for (j = 0; j < 16; j++) {
		KUNIT_ASSERT_EQ(test, dmr_store_insert(st, next + j, first + j,
						       true), 0);
		chunk_of[first + j] = next + j;
	}
	slot = take_run(test, st, 0, 1);
	KUNIT_ASSERT_EQ(test, slot, first + 16);
	next += 16;
	KUNIT_ASSERT_EQ(test, dmr_store_insert(st, next, slot, false), 0);
	chunk_of[slot] = next;
	mapped += 17;

	fake = &(struct fake_io){};
	dmr_store_commit(st, true, &err);
	fake = NULL;
	KUNIT_ASSERT_EQ(test, err, 0);

	KUNIT_EXPECT_EQ(test, dmr_store_nr_mapped(st), mapped);
	for (slot = 0; slot < dmr_store_used(st); slot++) {
		u32 c = chunk_of[slot], at;

		if (c == U32_MAX)
			continue;
		KUNIT_ASSERT_TRUE(test, dmr_store_lookup(st, c, &at));
		KUNIT_ASSERT_EQ(test, at, slot);
		KUNIT_ASSERT_EQ(test, dmr_store_insert(st, c, slot + 1, false),
				-EEXIST);
	}
	/* Durable: inserted so by odd runs, committed for even runs' heads. */
	for (i = 0; i < nr; i++) {
		if (!p[i].mapped)
			continue;
		KUNIT_EXPECT_TRUE(test, dmr_store_lookup_durable(st, p[i].chunk));
	}
	KUNIT_EXPECT_FALSE(test, dmr_store_lookup_durable(st, next));
	/* Chunks in no run, and the unmapped halves, are misses. */
	for (i = 0, k = 0; i < dmr_store_used(st); i++)
		if (chunk_of[i] != U32_MAX)
			chunks[k++] = chunk_of[i];
	KUNIT_ASSERT_EQ(test, k, mapped);
	k = dmr_plan_finish(chunks, k, 0);
	KUNIT_ASSERT_EQ(test, k, mapped);
	for (i = 0, j = 0; i <= next + 1; i++) {
		bool in = j < k && chunks[j] == i;

		KUNIT_ASSERT_EQ(test, dmr_store_lookup(st, i, &slot), in);
		j += in;
	}
	/* Listed once each. */
	KUNIT_EXPECT_EQ(test, dmr_store_collect(st, chunks, 200000, &got), 0);
	KUNIT_ASSERT_EQ(test, got, mapped);
	KUNIT_EXPECT_EQ(test, dmr_plan_finish(chunks, got, 0), mapped);
	KUNIT_EXPECT_EQ(test, dmr_store_collect(st, chunks, mapped - 1, &got),
			-EIO);
	dmr_store_destroy(st);
}

/*
 * A sequential fill (runs of 256 chunks, 1 MiB writes of 4 KiB chunks) adds
 * under a byte a chunk to what the empty map holds (its array of @rev page
 * pointers, and what store_for_test()'s reserve made), at every point from
 * 16384 chunks on: right after the run table grows too.  The grow worker
 * keeps up: dmr_store_map_bytes() waits for it after each run.  (Runs that
 * outrun it take single slots, a page of @rev at a time: not this bound.)
 */
static void store_map_sequential_fill_under_a_byte(struct kunit *test)
{
	const u32 run = 256, n = 400000, from = 16384;
	struct dmr_store *st = store_for_test(test, n);
	size_t empty = dmr_store_map_bytes(st), bytes;
	u32 chunk, i, slot, worst = 0;

	for (chunk = 0; chunk + run <= n; chunk += run) {
		slot = take_run(test, st, chunk, run);
		for (i = 0; i < run; i++)
			KUNIT_ASSERT_EQ(test, dmr_store_insert(st, chunk + i,
							       slot + i, false), 0);
		bytes = dmr_store_map_bytes(st) - empty;
		if (chunk + run < from)
			continue;
		/* Bytes per 1000 chunks. */
		worst = max_t(u32, worst, bytes * 1000 / (chunk + run));
		KUNIT_ASSERT_LE_MSG(test, bytes, (size_t)(chunk + run),
				    "%zu bytes for %u chunks", bytes, chunk + run);
	}
	kunit_info(test, "at most %u bytes per 1000 chunks\n", worst);
	dmr_store_destroy(st);
}

static void store_map_without_tag_bits(struct kunit *test)
{
	/* 2^30 slots leave no bit of a bucket for a tag (metadata not used). */
	struct dmr_layout l = {
		.meta_start = DMR_HEADER_SECTORS,
		.meta_blocks = 1,
		.nr_slots = BIT(30),
	};
	struct dmr_store *st = dmr_store_create("test", DMR_ROLE_ACTIVE, &l, 8);
	u32 i, slot;

	KUNIT_ASSERT_NOT_NULL(test, st);
	for (i = 0; i < 5000; i++)
		insert(test, st, i << 18, i, 0);
	for (i = 0; i < 5000; i++) {
		KUNIT_ASSERT_TRUE(test, dmr_store_lookup(st, i << 18, &slot));
		KUNIT_ASSERT_EQ(test, slot, i);
		KUNIT_ASSERT_FALSE(test, dmr_store_lookup(st, (i << 18) + 1,
							  &slot));
	}
	dmr_store_destroy(st);
}

/* ---- primary mode -------------------------------------------------------- */

static void primary_features_default(struct kunit *test)
{
	struct dmr_primary_features f;
	struct dm_arg_set none = { .argc = 0, .argv = NULL };
	struct dm_arg_set empty = ARG_SET("0");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_primary_parse_features(&none, &f, &error), 0);
	KUNIT_EXPECT_EQ(test, f.region_size, DMR_REGION_DEFAULT);
	KUNIT_EXPECT_FALSE(test, f.has_region_size);
	KUNIT_EXPECT_FALSE(test, f.sync_all);
	KUNIT_EXPECT_NULL(test, f.metadata);
	KUNIT_EXPECT_EQ(test, dmr_primary_parse_features(&empty, &f, &error), 0);
	KUNIT_EXPECT_EQ(test, f.region_size, DMR_REGION_DEFAULT);
}

static void primary_features_all(struct kunit *test)
{
	struct dmr_primary_features f;
	struct dm_arg_set as = ARG_SET("5", "sync_all", "region_size", "2097152",
				       "metadata", "/dev/md");
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_primary_parse_features(&as, &f, &error), 0);
	KUNIT_EXPECT_TRUE(test, f.sync_all);
	KUNIT_EXPECT_TRUE(test, f.has_region_size);
	KUNIT_EXPECT_EQ(test, f.region_size, 2097152U);
	KUNIT_EXPECT_STREQ(test, f.metadata, "/dev/md");
	KUNIT_EXPECT_EQ(test, as.argc, 0U);
}

struct primary_feature_case {
	unsigned int argc;
	const char *argv[6];
	const char *error;
};

static const struct primary_feature_case bad_primary_features[] = {
	{ 1, { "6" }, "Invalid number of feature arguments" },
	{ 1, { "1" }, "Invalid number of feature arguments" },
	{ 2, { "1", "sync" }, "Unrecognised feature argument" },
	{ 2, { "1", "SYNC_ALL" }, "Unrecognised feature argument" },
	{ 3, { "2", "low_water_mark", "8" },
	  "Feature of secondary mode: low_water_mark" },
	{ 3, { "2", "port_copy_chunks", "16" },
	  "Feature of secondary mode: port_copy_chunks" },
	{ 2, { "1", "metadata" }, "Feature needs an argument" },
	{ 2, { "1", "region_size" }, "Feature needs an argument" },
	{ 3, { "2", "region_size", "4" },
	  "Invalid region_size: expected a power of two from 8 to 2097152 sectors" },
	{ 3, { "2", "region_size", "1000" },
	  "Invalid region_size: expected a power of two from 8 to 2097152 sectors" },
	{ 3, { "2", "region_size", "4194304" },
	  "Invalid region_size: expected a power of two from 8 to 2097152 sectors" },
	{ 3, { "2", "region_size", "x" },
	  "Invalid region_size: expected a power of two from 8 to 2097152 sectors" },
	{ 3, { "2", "sync_all", "sync_all" }, "Duplicate feature argument" },
	{ 5, { "4", "metadata", "a", "metadata", "b" },
	  "Duplicate feature argument" },
	{ 5, { "4", "region_size", "8", "region_size", "8" },
	  "Duplicate feature argument" },
	{ 3, { "1", "sync_all", "junk" }, "Too many arguments" },
};

static void primary_features_reject(struct kunit *test)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_primary_features); i++) {
		const struct primary_feature_case *c = &bad_primary_features[i];
		char *argv[6];
		struct dm_arg_set as = { .argc = c->argc, .argv = argv };
		struct dmr_primary_features f;
		char *error = NULL;

		memcpy(argv, c->argv, sizeof(argv));
		KUNIT_EXPECT_EQ_MSG(test,
				    dmr_primary_parse_features(&as, &f, &error),
				    -EINVAL, "case %u", i);
		KUNIT_EXPECT_STREQ_MSG(test, error, c->error, "case %u", i);
	}
}

static void primary_region_arithmetic(struct kunit *test)
{
	struct dmr_primary_features f = { .region_size = DMR_REGION_DEFAULT };
	char *error = NULL;
	sector_t len;
	u32 rs = 0;

	/* Without region_size the default shrinks to fit the target. */
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(1 << 20, &f, &rs, &error), 0);
	KUNIT_EXPECT_EQ(test, rs, 1024U);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(1000, &f, &rs, &error), 0);
	KUNIT_EXPECT_EQ(test, rs, 512U);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(8, &f, &rs, &error), 0);
	KUNIT_EXPECT_EQ(test, rs, 8U);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(7, &f, &rs, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Target is shorter than the smallest region (8 sectors)");
	/* A region_size from the table must fit. */
	f.has_region_size = true;
	f.region_size = 2048;
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(2048, &f, &rs, &error), 0);
	KUNIT_EXPECT_EQ(test, rs, 2048U);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_size(2047, &f, &rs, &error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Region size exceeds the target length");

	/* Regions, the last one partial. */
	KUNIT_EXPECT_EQ(test, dmr_primary_nr_regions(4096, 1024), 4ULL);
	KUNIT_EXPECT_EQ(test, dmr_primary_nr_regions(4097, 1024), 5ULL);
	KUNIT_EXPECT_EQ(test, dmr_primary_nr_regions(8, 8), 1ULL);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_len(4097, 1024, 0), (sector_t)1024);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_len(4097, 1024, 3), (sector_t)1024);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_len(4097, 1024, 4), (sector_t)1);
	KUNIT_EXPECT_EQ(test, dmr_primary_region_len(4097, 1024, 5), (sector_t)0);
	len = dmr_primary_region_len(1ULL << 40, 1U << 21, (1ULL << 19) - 1);
	KUNIT_EXPECT_EQ(test, len, (sector_t)(1U << 21));

	/* The disk log: 1 KiB of header, then a bitmap in longs. */
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(1, 512), (sector_t)3);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(64, 512), (sector_t)3);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(4096, 512), (sector_t)3);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(4097, 512), (sector_t)4);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(1, 4096), (sector_t)8);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_sectors(1 << 20, 4096),
			(sector_t)264);
}

static void primary_sync_rate(struct kunit *test)
{
	enum dmr_pmsg msg;
	char *error = NULL;
	u32 rate = 7;

#define PMSG(n, ...) dmr_primary_parse_message(n, ARGS(__VA_ARGS__), &msg, \
					      &rate, &error)
	KUNIT_EXPECT_EQ(test, PMSG(2, "sync_rate", "1024"), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_PMSG_SYNC_RATE);
	KUNIT_EXPECT_EQ(test, rate, 1024U);
	KUNIT_EXPECT_EQ(test, PMSG(2, "sync_rate", "0"), 0);
	KUNIT_EXPECT_EQ(test, rate, 0U);
	KUNIT_EXPECT_EQ(test, PMSG(2, "sync_rate", "-1"), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error,
			   "Invalid sync_rate: expected KiB/s, 0 for unlimited");
	KUNIT_EXPECT_EQ(test, PMSG(2, "sync_rate", "4294967296"), -EINVAL);
	KUNIT_EXPECT_EQ(test, PMSG(1, "sync_rate"), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Message takes one argument");
	KUNIT_EXPECT_EQ(test, PMSG(2, "checkpoint", "now"), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Message takes no arguments");
	KUNIT_EXPECT_EQ(test, PMSG(1, "failover"), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Unrecognised message");
	KUNIT_EXPECT_EQ(test, PMSG(1, "stop"), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_PMSG_STOP);
	KUNIT_EXPECT_EQ(test, PMSG(0, "stop"), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Missing message");
#undef PMSG

	/* The wait after a copy: bytes at KiB/s, in jiffies, rounded up. */
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(512 * 1024, 0), 0UL);
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(512 * 1024, 1024), (unsigned long)HZ / 2);
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(1024 * 1024, 1024), (unsigned long)HZ);
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(1, 1024), 1UL);
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(1ULL << 30, 1), (unsigned long)HZ << 20);
	KUNIT_EXPECT_EQ(test, dmr_primary_throttle(1ULL << 30, U32_MAX), 1UL);
}

static void primary_state_table(struct kunit *test)
{
	static const enum dmr_pstate after[DMR_P_NR_STATES][3] = {
		/* remote error, synced, stop */
		[DMR_P_RUNNING] = { DMR_P_DEGRADED, DMR_P_RUNNING, DMR_P_DONE },
		[DMR_P_SYNCING] = { DMR_P_DEGRADED, DMR_P_RUNNING, DMR_P_DONE },
		[DMR_P_DEGRADED] = { DMR_P_DEGRADED, DMR_P_DEGRADED, DMR_P_DONE },
		[DMR_P_DONE] = { DMR_P_DONE, DMR_P_DONE, DMR_P_DONE },
	};
	static const enum dmr_paction act[DMR_P_NR_STATES][DMR_PMSG_NR] = {
		/* checkpoint, stop, sync_rate */
		[DMR_P_RUNNING] = { DMR_PACT_BARRIER, DMR_PACT_STOP, DMR_PACT_SYNC_RATE },
		[DMR_P_SYNCING] = { DMR_PACT_BUSY, DMR_PACT_STOP, DMR_PACT_SYNC_RATE },
		[DMR_P_DEGRADED] = { DMR_PACT_FAIL, DMR_PACT_STOP, DMR_PACT_SYNC_RATE },
		[DMR_P_DONE] = { DMR_PACT_FAIL, DMR_PACT_NOTHING, DMR_PACT_SYNC_RATE },
	};
	const enum dmr_pevent events[] = {
		DMR_PEV_REMOTE_ERROR, DMR_PEV_SYNCED, DMR_PEV_STOP,
	};
	unsigned int s, e, m;

	for (s = 0; s < DMR_P_NR_STATES; s++) {
		for (e = 0; e < ARRAY_SIZE(events); e++)
			KUNIT_EXPECT_EQ_MSG(test, dmr_primary_next_state(s, events[e]),
					    after[s][e], "state %u event %u", s, e);
		for (m = 0; m < DMR_PMSG_NR; m++)
			KUNIT_EXPECT_EQ_MSG(test, dmr_primary_msg_action(s, m),
					    act[s][m], "state %u msg %u", s, m);
	}
	KUNIT_EXPECT_STREQ(test, dmr_primary_state_name(DMR_P_RUNNING), "running");
	KUNIT_EXPECT_STREQ(test, dmr_primary_state_name(DMR_P_SYNCING), "syncing");
	KUNIT_EXPECT_STREQ(test, dmr_primary_state_name(DMR_P_DEGRADED), "degraded");
	KUNIT_EXPECT_STREQ(test, dmr_primary_state_name(DMR_P_DONE), "done");
}

static void primary_log_starts(struct kunit *test)
{
	/* core log: in sync, or all out of sync with sync_all */
	KUNIT_EXPECT_STREQ(test, dmr_primary_log_sync(false, false, true), "nosync");
	KUNIT_EXPECT_STREQ(test, dmr_primary_log_sync(false, true, true), "sync");
	/* disk log: a new one in sync, an existing one as it is */
	KUNIT_EXPECT_STREQ(test, dmr_primary_log_sync(true, false, true), "nosync");
	KUNIT_EXPECT_NULL(test, dmr_primary_log_sync(true, false, false));
	KUNIT_EXPECT_STREQ(test, dmr_primary_log_sync(true, true, false), "sync");
	KUNIT_EXPECT_STREQ(test, dmr_primary_log_sync(true, true, true), "sync");
}

static void primary_log_found_tells_blank_from_damaged(struct kunit *test)
{
	__le32 magic = cpu_to_le32(0x4D695272U);
	u8 buf[1536] = {};

	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf)),
			DMR_LOG_BLANK);
	/* dm-log's magic, whatever follows */
	memcpy(buf, &magic, sizeof(magic));
	buf[1024] = 0x5a;
	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf)),
			DMR_LOG_OURS);
	/* a flipped magic bit is damage, not a blank device */
	buf[0] ^= 1;
	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf)),
			DMR_LOG_DAMAGED);
	/* a zeroed header over bits of the bitmap too */
	memset(buf, 0, 16);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf)),
			DMR_LOG_DAMAGED);
	/* one byte anywhere, the last included */
	buf[1024] = 0;
	buf[sizeof(buf) - 1] = 1;
	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf)),
			DMR_LOG_DAMAGED);
	KUNIT_EXPECT_EQ(test, dmr_primary_log_found(buf, sizeof(buf) - 1),
			DMR_LOG_BLANK);
}

static struct kunit_case dmr_primary_cases[] = {
	KUNIT_CASE(primary_features_default),
	KUNIT_CASE(primary_features_all),
	KUNIT_CASE(primary_features_reject),
	KUNIT_CASE(primary_region_arithmetic),
	KUNIT_CASE(primary_sync_rate),
	KUNIT_CASE(primary_state_table),
	KUNIT_CASE(primary_log_starts),
	KUNIT_CASE(primary_log_found_tells_blank_from_damaged),
	{}
};

static struct kunit_suite dmr_primary_suite = {
	.name = "dm-replication-primary",
	.test_cases = dmr_primary_cases,
};

static struct kunit_case dmr_parse_cases[] = {
	KUNIT_CASE(mode_accepts_the_three_modes),
	KUNIT_CASE(mode_rejects_missing_and_unknown),
	KUNIT_CASE(chunk_size_accepts_powers_of_two_in_range),
	KUNIT_CASE(chunk_size_rejects_bad_values),
	KUNIT_CASE(store_capacity_leaves_room_for_header_and_records),
	KUNIT_CASE(layout_fits_the_device_for_every_size),
	KUNIT_CASE(features_accept_none_and_empty),
	KUNIT_CASE(features_accept_low_water_mark),
	KUNIT_CASE(features_accept_port_copy_chunks),
	KUNIT_CASE(features_reject_bad_groups),
	KUNIT_CASE(features_reject_duplicates),
	KUNIT_CASE(no_features_accepts_only_empty),
	KUNIT_CASE(message_accepts_the_four),
	KUNIT_CASE(message_rejects_bad_commit_depth),
	KUNIT_CASE(message_rejects_unknown_and_extra),
	KUNIT_CASE(state_names_match_the_status_contract),
	{}
};

static struct kunit_case dmr_format_cases[] = {
	KUNIT_CASE(header_round_trips),
	KUNIT_CASE(header_rejects_each_corruption),
	KUNIT_CASE(header_refuses_cursor_past_the_end),
	KUNIT_CASE(pick_blank_and_newest),
	KUNIT_CASE(pick_survives_a_torn_copy),
	KUNIT_CASE(check_matches_the_table),
	KUNIT_CASE(reconcile_decides_format_resume_or_refusal),
	KUNIT_CASE(records_are_live_only_in_their_epoch),
	{}
};

static struct kunit_case dmr_state_cases[] = {
	KUNIT_CASE(state_machine_follows_qemu),
	{}
};

static struct kunit_case dmr_commit_cases[] = {
	KUNIT_CASE(plan_sorts_dedups_and_skips_merged),
	KUNIT_CASE(sort_unique_matches_sort),
	KUNIT_CASE(plan_extents_follow_slots_and_stores),
	KUNIT_CASE(routes_of_reads),
	KUNIT_CASE(routes_of_writes),
	KUNIT_CASE(cursor_stops_at_the_first_extent_not_copied),
	KUNIT_CASE(store_collect_lists_every_chunk),
	{}
};

static struct kunit_case dmr_store_cases[] = {
	KUNIT_CASE(store_allocates_until_full),
	KUNIT_CASE(store_allocates_runs_whole_or_not_at_all),
	KUNIT_CASE(store_is_clean_without_records_or_commit),
	KUNIT_CASE(store_commit_fails_for_good_at_each_step),
	KUNIT_CASE(store_commit_in_one_write),
	KUNIT_CASE(store_flush_failure_without_records_fails_the_store),
	KUNIT_CASE(store_maps_chunks),
	KUNIT_CASE(store_map_makes_room_before_slots),
	KUNIT_CASE(store_map_grows_and_keeps_every_mapping),
	KUNIT_CASE(store_map_keeps_runs_and_singles),
	KUNIT_CASE(store_map_sequential_fill_under_a_byte),
	KUNIT_CASE(store_map_without_tag_bits),
	KUNIT_CASE(store_reset_empties_everything),
	{}
};

static struct kunit_suite dmr_parse_suite = {
	.name = "dm-replication-parse",
	.test_cases = dmr_parse_cases,
};

static struct kunit_suite dmr_format_suite = {
	.name = "dm-replication-format",
	.test_cases = dmr_format_cases,
};

static struct kunit_suite dmr_state_suite = {
	.name = "dm-replication-state",
	.test_cases = dmr_state_cases,
};

static struct kunit_suite dmr_store_suite = {
	.name = "dm-replication-store",
	.test_cases = dmr_store_cases,
};

static struct kunit_suite dmr_commit_suite = {
	.name = "dm-replication-commit",
	.test_cases = dmr_commit_cases,
};

kunit_test_suites(&dmr_parse_suite, &dmr_format_suite, &dmr_state_suite,
		  &dmr_store_suite, &dmr_commit_suite, &dmr_primary_suite);
