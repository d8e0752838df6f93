// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit suites for dm-replication's pure logic.
 *
 * Built only when the module is grafted into a kernel tree with
 * CONFIG_DM_REPLICATION_KUNIT_TEST (see tests/kunit/run).
 */
#include <kunit/test.h>
#include <linux/kernel.h>

#include "dm-replication.h"

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

static void store_capacity_reserves_the_header_chunk(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(0, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(7, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(8, 8), (sector_t)0);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(16, 8), (sector_t)1);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(23, 8), (sector_t)1);
	KUNIT_EXPECT_EQ(test, dmr_store_capacity(2048 * 64, 2048),
			(sector_t)63);
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

struct feature_case {
	unsigned int argc;
	char *argv[5];
	const char *error;
};

static const struct feature_case bad_features[] = {
	{ 1, { "x" }, "Invalid number of feature arguments" },
	{ 1, { "3" }, "Invalid number of feature arguments" },
	{ 2, { "1", "low_water_mark" }, "Feature low_water_mark needs a value" },
	{ 3, { "2", "low_water_mark", "many" },
	  "Invalid low_water_mark: not a number" },
	{ 3, { "2", "low_water_mark", "-1" },
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
	char *error = NULL;

	/* The group allows two words only: four is already too many. */
	KUNIT_EXPECT_EQ(test, dmr_parse_secondary_features(&as, &f, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Invalid number of feature arguments");
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

static void message_accepts_the_three(struct kunit *test)
{
	enum dmr_msg msg;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("checkpoint"), &msg,
						&error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_CHECKPOINT);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("stop"), &msg, &error),
			0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_STOP);
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("failover"), &msg,
						&error), 0);
	KUNIT_EXPECT_EQ(test, msg, DMR_MSG_FAILOVER);
	KUNIT_EXPECT_NULL(test, error);
}

static void message_rejects_unknown_and_extra(struct kunit *test)
{
	enum dmr_msg msg;
	char *error = NULL;

	KUNIT_EXPECT_EQ(test, dmr_parse_message(0, NULL, &msg, &error),
			-EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Empty message");
	KUNIT_EXPECT_EQ(test, dmr_parse_message(1, ARGS("checkpoints"), &msg,
						&error), -EINVAL);
	KUNIT_EXPECT_STREQ(test, error, "Unrecognised message");
	KUNIT_EXPECT_EQ(test, dmr_parse_message(2, ARGS("stop", "now"), &msg,
						&error), -EINVAL);
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

static struct kunit_case dmr_parse_cases[] = {
	KUNIT_CASE(mode_accepts_the_three_modes),
	KUNIT_CASE(mode_rejects_missing_and_unknown),
	KUNIT_CASE(chunk_size_accepts_powers_of_two_in_range),
	KUNIT_CASE(chunk_size_rejects_bad_values),
	KUNIT_CASE(store_capacity_reserves_the_header_chunk),
	KUNIT_CASE(features_accept_none_and_empty),
	KUNIT_CASE(features_accept_low_water_mark),
	KUNIT_CASE(features_reject_bad_groups),
	KUNIT_CASE(features_reject_duplicates),
	KUNIT_CASE(no_features_accepts_only_empty),
	KUNIT_CASE(message_accepts_the_three),
	KUNIT_CASE(message_rejects_unknown_and_extra),
	KUNIT_CASE(state_names_match_the_status_contract),
	{}
};

static struct kunit_suite dmr_parse_suite = {
	.name = "dm-replication-parse",
	.test_cases = dmr_parse_cases,
};

kunit_test_suite(dmr_parse_suite);
