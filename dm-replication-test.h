/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: what the files export only for their KUnit tests
 * (tests/kunit/dm-replication-test.c).  Nothing else calls these.
 */
#ifndef DM_REPLICATION_TEST_H
#define DM_REPLICATION_TEST_H

#include <linux/list.h>
#include <linux/types.h>

#include "dm-replication.h"
#include "dm-replication-commit.h"
#include "dm-replication-cow.h"

struct dmr_disk_header;
struct dmr_disk_record;

/* dm-replication-cow.c: the on-disk format (dm-replication-format.h). */
void dmr_header_encode(const struct dmr_header *h, struct dmr_disk_header *d);
int dmr_header_decode(const struct dmr_disk_header *d, struct dmr_header *h,
		      char **error);
int dmr_header_pick(const void *area, struct dmr_header *h, char **error);
int dmr_header_check(const struct dmr_header *h, enum dmr_role role,
		     u32 chunk_sectors, u64 secondary_sectors, u64 dev_sectors,
		     char **error);
bool dmr_record_live(const struct dmr_disk_record *r, u64 epoch,
		     u64 nr_chunks, u32 *chunk);

/*
 * dm-replication-cow.c: the steps of a store's metadata commit, in order:
 * flush the data, write the pending records into the metadata blocks, write
 * the dirty blocks, flush them.  dmr_store_open() sets the dm-bufio ones;
 * KUnit replaces them to inject errors.
 */
struct dmr_store_io {
	int (*flush)(struct dmr_store *st);
	int (*write_record)(struct dmr_store *st, u64 epoch,
			    const struct dmr_pending *p);
	int (*write_dirty)(struct dmr_store *st);
	/* Optional: steps 1 to 4 in one write, or -EAGAIN to take them apart. */
	int (*write_block)(struct dmr_store *st, u64 epoch,
			   struct llist_node *list);
};

void dmr_store_set_io(struct dmr_store *st, const struct dmr_store_io *io);
size_t dmr_store_map_bytes(struct dmr_store *st);
u64 dmr_store_epoch(struct dmr_store *st);

/* dm-replication-commit.c: the failover's pure logic. */
typedef bool (*dmr_source_fn)(void *ctx, u32 chunk, enum dmr_role *store,
			      u32 *slot);

u32 dmr_plan_finish(u32 *chunks, u32 n, u64 cursor);
u32 dmr_plan_extent(const u32 *plan, u32 n, u32 i, u32 max,
		    dmr_source_fn source, void *ctx);
enum dmr_route dmr_route_write(enum dmr_state state, u64 chunk, u64 durable,
			       u64 started, bool in_active, bool in_hidden);

/* A run of consecutive plan chunks, copied from consecutive slots of a store. */
struct dmr_extent {
	struct list_head list;		/* on the commit's extents, in order */
	struct dmr_core *core;
	u32 first;			/* its first chunk */
	u32 nr;				/* its chunks */
	enum dmr_role store;		/* which store it is copied from */
	u32 slot;			/* its first slot */
	bool done;			/* copied without error */
};

u64 dmr_commit_cursor(const struct list_head *extents, u64 started,
		      u32 *nr_chunks, unsigned int *nr_extents);

/* dm-replication.c: argument parsing and the state machine. */
int dmr_parse_mode(const char *arg, enum dmr_mode *mode, char **error);
int dmr_parse_chunk_size(const char *arg, sector_t *chunk_sectors,
			 char **error);
int dmr_parse_secondary_features(struct dm_arg_set *as,
				 struct dmr_secondary_features *f,
				 char **error);
int dmr_parse_no_features(struct dm_arg_set *as, char **error);
int dmr_parse_message(unsigned int argc, char **argv, enum dmr_msg *msg,
		      unsigned int *value, char **error);
enum dmr_action dmr_msg_action(enum dmr_state state, enum dmr_msg msg);

#endif /* DM_REPLICATION_TEST_H */
