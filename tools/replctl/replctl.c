// SPDX-License-Identifier: GPL-2.0-only
/*
 * replctl: the operator's tool for dm-replication.
 *
 * It talks to device-mapper through libdevmapper, as dmsetup and lvm2 do, and
 * never runs dmsetup.  The man page is tools/replctl.8.
 *
 * Exit codes (the man page's EXIT STATUS):
 *   0 success, 1 the kernel or a device refused or an operation failed,
 *   2 usage error, 3 no such device or the wrong kind of device,
 *   4 the device is in (or went into) a state that does not allow the
 *   operation, 5 a device is busy (open or held).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>
#include <linux/dm-ioctl.h>
#include <libdevmapper.h>

#define EX_OK		0
#define EX_FAIL		1
#define EX_USAGE	2
#define EX_NODEV	3
#define EX_STATE	4
#define EX_BUSY		5

#define TARGET		"replication"
#define DEFAULT_CHUNK	(64 * 1024)
#define WIPE_BYTES	4096

static bool debug;
/* appended to the next error line: what was done before the failure */
static char fail_suffix[512];

/* ---- messages ------------------------------------------------------------ */

static int __attribute__((format(printf, 2, 3))) fail(int code, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("replctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", fail_suffix);
	return code;
}

/* libdevmapper's own messages: kept for the debug output only. */
static void dm_log(int level, const char *file, int line, int dm_errno_or_class,
		   const char *f, ...)
{
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	if (!debug || (level & 7) > 4)
		return;
	fputs("libdevmapper: ", stderr);
	va_start(ap, f);
	vfprintf(stderr, f, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * The kernel log says why a table or a message was refused (ti->error, the
 * target's DMERR).  kmsg_mark() remembers where the log ends; kmsg_reason()
 * returns the last device-mapper line logged since, preferring the target's.
 */
static int kmsg_fd = -1;

static void kmsg_mark(void)
{
	if (kmsg_fd >= 0)
		close(kmsg_fd);
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
}

static const char *kmsg_reason(void)
{
	static char best[512];
	char rec[2048], *msg, *end, *p;
	bool have_target = false;
	ssize_t n;

	best[0] = '\0';
	if (kmsg_fd < 0)
		return NULL;
	for (;;) {
		n = read(kmsg_fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		end = strchr(msg, '\n');
		if (end)
			*end = '\0';
		p = strstr(msg, TARGET ": ");
		if (p) {
			snprintf(best, sizeof(best), "%s", p + strlen(TARGET ": "));
			have_target = true;
		} else if (!have_target && strstr(msg, "device-mapper")) {
			snprintf(best, sizeof(best), "%s", msg);
		}
	}
	return best[0] ? best : NULL;
}

/* " (kernel: REASON)" or "" */
static const char *kernel_says(void)
{
	static char buf[600];
	const char *r = kmsg_reason();

	if (!r)
		return "";
	snprintf(buf, sizeof(buf), " (kernel: %s)", r);
	return buf;
}

/* ---- numbers --------------------------------------------------------------- */

static const char *human(uint64_t bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	static char ring[8][32];
	static int next;
	char *buf = ring[next++ % 8];
	double v = (double)bytes;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, 32, "%" PRIu64 " B", bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, 32, "%.0f %s", v, unit[i]);
	else
		snprintf(buf, 32, "%.1f %s", v, unit[i]);
	return buf;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end && end != s;
}

/* bytes with an optional k, m or g suffix (binary units) */
static bool parse_size(const char *s, uint64_t *out)
{
	char num[32], *end;
	uint64_t mult = 1;
	size_t len = strlen(s);

	if (!len || len >= sizeof(num))
		return false;
	memcpy(num, s, len + 1);
	end = num + len - 1;
	switch (*end) {
	case 'k': case 'K':
		mult = 1ULL << 10;
		break;
	case 'm': case 'M':
		mult = 1ULL << 20;
		break;
	case 'g': case 'G':
		mult = 1ULL << 30;
		break;
	}
	if (mult != 1)
		*end = '\0';
	if (!parse_u64(num, out) || *out > UINT64_MAX / mult)
		return false;
	*out *= mult;
	return true;
}

static bool power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- block devices ------------------------------------------------------------ */

/* 0, or EX_NODEV with a message */
static int blockdev_size(const char *path, const char *what, uint64_t *bytes)
{
	struct stat st;
	int fd;

	if (stat(path, &st) < 0)
		return fail(EX_NODEV, "%s %s: %s", what, path, strerror(errno));
	if (!S_ISBLK(st.st_mode))
		return fail(EX_NODEV, "%s %s: not a block device", what, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(EX_NODEV, "%s %s: %s", what, path, strerror(errno));
	if (ioctl(fd, BLKGETSIZE64, bytes) < 0) {
		close(fd);
		return fail(EX_FAIL, "%s %s: cannot read its size: %s", what, path,
			    strerror(errno));
	}
	close(fd);
	return 0;
}

/* ---- device-mapper ------------------------------------------------------------ */

enum mode { M_NONE, M_SECONDARY, M_PORT, M_PRIMARY };
static const char *const mode_name[] = { "none", "secondary", "port", "primary" };

struct repl {
	char name[DM_NAME_LEN];
	struct dm_info info;
	uint64_t length;		/* sectors */
	int ntargets;
	char target[64];
	char table[1024];		/* the target's table parameters */
	char status[1024];		/* its status parameters */
	enum mode mode;

	/* from the table */
	char dev[3][64];		/* secondary hidden active | local remote | secondary */
	uint64_t chunk;			/* sectors */
	int64_t lwm;			/* -1: none */
	uint64_t port_copy;		/* chunks a port first touch copies */
	char meta[64];
	uint64_t region;		/* sectors */
	bool sync_all;

	/* from the status */
	char state[32];
	int error;
	uint64_t used_act, tot_act, used_hid, tot_hid, checkpoints, to_commit;
	uint64_t copies;
	uint64_t forwarded, oos, regions;
};

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt)
		return NULL;
	if (name && !dm_task_set_name(dmt, name)) {
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

/*
 * Run a task; a create, resume or remove makes or removes the /dev/mapper
 * node as dmsetup does (udev's cookie, or libdevmapper itself without udev).
 * Return: 0 or the errno of the ioctl.
 */
static int run(struct dm_task *dmt, bool nodes)
{
	uint32_t cookie = 0;
	int r, err;

	if (nodes && !dm_task_set_cookie(dmt, &cookie, 0))
		return EINVAL;
	errno = 0;
	r = dm_task_run(dmt);
	err = r ? 0 : (dm_task_get_errno(dmt) ? dm_task_get_errno(dmt) :
		       (errno ? errno : EIO));
	if (nodes)
		dm_udev_wait(cookie);
	return err;
}

/*
 * Resume NAME: swap in its inactive table if it has one (dm suspends it
 * first).  With nolockfs the suspend leaves a file system on NAME alone
 * (dmsetup's --nolockfs): one frozen with fsfreeze cannot be frozen again by
 * 6.1, whose suspend then fails with EBUSY.
 */
static int resume(const char *name, bool nolockfs)
{
	struct dm_task *dmt = task(DM_DEVICE_RESUME, name);
	int err;

	if (!dmt)
		return ENOMEM;
	if (nolockfs && !dm_task_skip_lockfs(dmt)) {
		dm_task_destroy(dmt);
		return EINVAL;
	}
	err = run(dmt, true);
	dm_task_destroy(dmt);
	return err;
}

static int simple(int type, const char *name, bool nodes)
{
	struct dm_task *dmt = task(type, name);
	int err;

	if (!dmt)
		return ENOMEM;
	err = run(dmt, nodes);
	dm_task_destroy(dmt);
	return err;
}

static int dm_message(const char *name, const char *msg)
{
	struct dm_task *dmt = task(DM_DEVICE_TARGET_MSG, name);
	int err;

	if (!dmt)
		return ENOMEM;
	if (!dm_task_set_sector(dmt, 0) || !dm_task_set_message(dmt, msg)) {
		dm_task_destroy(dmt);
		return ENOMEM;
	}
	err = run(dmt, false);
	dm_task_destroy(dmt);
	return err;
}

/* Load a one-target table: DM_DEVICE_CREATE (create, load, resume) or RELOAD. */
static int dm_load(int type, const char *name, uint64_t len, const char *params)
{
	struct dm_task *dmt = task(type, name);
	int err;

	if (!dmt)
		return ENOMEM;
	if (!dm_task_add_target(dmt, 0, len, TARGET, params)) {
		dm_task_destroy(dmt);
		return ENOMEM;
	}
	err = run(dmt, type == DM_DEVICE_CREATE);
	dm_task_destroy(dmt);
	return err;
}

/* TABLE or STATUS of a device: the first target; 0, ENXIO if none */
static int query(int type, const char *name, struct repl *r)
{
	struct dm_task *dmt = task(type, name);
	uint64_t start, length;
	char *ttype = NULL, *params = NULL;
	void *next = NULL;
	int err;

	if (!dmt)
		return ENOMEM;
	err = run(dmt, false);
	if (!err && (!dm_task_get_info(dmt, &r->info) || !r->info.exists))
		err = ENXIO;
	if (err) {
		dm_task_destroy(dmt);
		return err;
	}
	r->ntargets = 0;
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &ttype, &params);
		if (!ttype)
			break;
		if (!r->ntargets) {
			snprintf(r->target, sizeof(r->target), "%s", ttype);
			snprintf(type == DM_DEVICE_TABLE ? r->table : r->status,
				 sizeof(r->table), "%s", params ? params : "");
		}
		r->ntargets++;
		r->length = start + length;
	} while (next);
	dm_task_destroy(dmt);
	return 0;
}

static enum mode mode_of(const char *params)
{
	size_t n = strcspn(params, " ");

	if (n == 9 && !strncmp(params, "secondary", 9))
		return M_SECONDARY;
	if (n == 4 && !strncmp(params, "port", 4))
		return M_PORT;
	if (n == 7 && !strncmp(params, "primary", 7))
		return M_PRIMARY;
	return M_NONE;
}

static void parse_table(struct repl *r)
{
	char buf[1024], *w[16], *save = NULL, *t;
	int n = 0, i, nfeat;

	snprintf(buf, sizeof(buf), "%s", r->table);
	for (t = strtok_r(buf, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	r->lwm = -1;
	switch (r->mode) {
	case M_SECONDARY:
		for (i = 0; i < 3 && i + 1 < n; i++)
			snprintf(r->dev[i], sizeof(r->dev[i]), "%s", w[i + 1]);
		if (n > 4)
			r->chunk = strtoull(w[4], NULL, 10);
		r->port_copy = 1;
		for (i = 6; i + 1 < n; i++)
			if (!strcmp(w[i], "low_water_mark"))
				r->lwm = strtoll(w[i + 1], NULL, 10);
			else if (!strcmp(w[i], "port_copy_chunks"))
				r->port_copy = strtoull(w[i + 1], NULL, 10);
		break;
	case M_PORT:
		if (n > 1)
			snprintf(r->dev[0], sizeof(r->dev[0]), "%s", w[1]);
		break;
	case M_PRIMARY:
		for (i = 0; i < 2 && i + 1 < n; i++)
			snprintf(r->dev[i], sizeof(r->dev[i]), "%s", w[i + 1]);
		nfeat = n > 3 ? atoi(w[3]) : 0;
		for (i = 4; i < 4 + nfeat && i < n; i++) {
			if (!strcmp(w[i], "metadata") && i + 1 < n)
				snprintf(r->meta, sizeof(r->meta), "%s", w[++i]);
			else if (!strcmp(w[i], "region_size") && i + 1 < n)
				r->region = strtoull(w[++i], NULL, 10);
			else if (!strcmp(w[i], "sync_all"))
				r->sync_all = true;
		}
		if (!r->region) {	/* the kernel's default, lowered to fit */
			r->region = 1024;
			while (r->region > r->length && r->region > 8)
				r->region >>= 1;
		}
		break;
	default:
		break;
	}
}

static void parse_status(struct repl *r)
{
	char mode[16] = "";

	r->state[0] = '\0';
	switch (mode_of(r->status)) {
	case M_SECONDARY:
		sscanf(r->status, "%15s %31s %d %" SCNu64 "/%" SCNu64 " %" SCNu64 "/%" SCNu64
		       " %" SCNu64 " %" SCNu64, mode, r->state, &r->error, &r->used_act,
		       &r->tot_act, &r->used_hid, &r->tot_hid, &r->checkpoints, &r->to_commit);
		break;
	case M_PORT:
		sscanf(r->status, "%15s %31s %" SCNu64, mode, r->state, &r->copies);
		break;
	case M_PRIMARY:
		sscanf(r->status, "%15s %31s %d %" SCNu64 " %" SCNu64 "/%" SCNu64, mode,
		       r->state, &r->error, &r->forwarded, &r->oos, &r->regions);
		break;
	default:
		break;
	}
}

/*
 * Read a device's table and status.  Return: 0; ENXIO when there is no such
 * device; ENOTTY when it is not a one-target replication device; or an errno.
 */
static int repl_read(const char *name, struct repl *r)
{
	int err;

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	err = query(DM_DEVICE_TABLE, name, r);
	if (err)
		return err;
	if (r->ntargets != 1 || strcmp(r->target, TARGET))
		return ENOTTY;
	err = query(DM_DEVICE_STATUS, name, r);
	if (err)
		return err;
	if (r->ntargets != 1 || strcmp(r->target, TARGET))
		return ENOTTY;
	r->mode = mode_of(r->table);
	parse_table(r);
	parse_status(r);
	return 0;
}

/* repl_read() with the messages: 0 or an exit code */
static int repl_get(const char *name, struct repl *r)
{
	int err = repl_read(name, r);

	if (err == ENXIO)
		return fail(EX_NODEV, "%s: no such device", name);
	if (err == ENOTTY) {
		if (r->ntargets == 0)
			return fail(EX_NODEV, "%s: not a replication device (no table loaded)",
				    name);
		return fail(EX_NODEV, "%s: not a replication device (its table: %d %s target%s)",
			    name, r->ntargets, r->target, r->ntargets > 1 ? "s" : "");
	}
	if (err)
		return fail(EX_FAIL, "%s: cannot read its table or status: %s", name,
			    strerror(err));
	return 0;
}

/* 0 or EX_NODEV when r is not of one of the modes (a bit mask) */
static int want_mode(const struct repl *r, unsigned int modes, const char *op)
{
	if (modes & (1U << r->mode))
		return 0;
	return fail(EX_NODEV, "%s: %s: is a %s device, not a%s", r->name, op,
		    mode_name[r->mode],
		    modes == (1U << M_SECONDARY) ? " secondary" :
		    modes == (1U << M_PRIMARY) ? " primary" : " secondary or primary");
}

/* Every device name; a NULL-terminated array, or NULL. */
static char **dm_names(void)
{
	struct dm_task *dmt = task(DM_DEVICE_LIST, NULL);
	struct dm_names *n;
	char **v = NULL;
	size_t cnt = 0;
	uint32_t next = 0;

	if (!dmt || run(dmt, false) || !(n = dm_task_get_names(dmt))) {
		if (dmt)
			dm_task_destroy(dmt);
		return NULL;
	}
	v = calloc(1, sizeof(*v));
	if (n->dev) {
		do {
			n = (struct dm_names *)((char *)n + next);
			v = realloc(v, (cnt + 2) * sizeof(*v));
			if (!v)
				break;
			v[cnt++] = strdup(n->name);
			v[cnt] = NULL;
			next = n->next;
		} while (next);
	}
	dm_task_destroy(dmt);
	return v;
}

/* ---- status --------------------------------------------------------------------- */

/* A secondary failing over: done = 1 - to_commit / (used active + used hidden). */
static double progress(const struct repl *r)
{
	double used;

	if (r->mode == M_SECONDARY &&
	    (!strcmp(r->state, "failover") || !strcmp(r->state, "failover_failed"))) {
		used = (double)(r->used_act + r->used_hid);
		if (!used || r->to_commit >= used)
			return r->to_commit ? 0 : 1;
		return 1 - r->to_commit / used;
	}
	if (r->mode == M_PRIMARY && !strcmp(r->state, "syncing") && r->regions)
		return 1 - (double)r->oos / r->regions;
	return -1;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_kv_str(const char *k, const char *v, bool comma)
{
	printf("  \"%s\": ", k);
	if (v)
		json_str(v);
	else
		fputs("null", stdout);
	puts(comma ? "," : "");
}

static void json_kv_num(const char *k, uint64_t v)
{
	printf("  \"%s\": %" PRIu64 ",\n", k, v);
}

static void json_bytes(const char *k, uint64_t bytes, const char *extra)
{
	printf("  \"%s\": {%s\"bytes\": %" PRIu64 ", \"human\": \"%s\"},\n", k,
	       extra ? extra : "", bytes, human(bytes));
}

static void json_store(const char *k, uint64_t used, uint64_t total, uint64_t chunk_bytes)
{
	printf("  \"%s\": {\"used_slots\": %" PRIu64 ", \"total_slots\": %" PRIu64
	       ", \"used_bytes\": %" PRIu64 ", \"total_bytes\": %" PRIu64
	       ", \"used_human\": \"%s\", \"total_human\": \"%s\", \"used_fraction\": %.4f},\n",
	       k, used, total, used * chunk_bytes, total * chunk_bytes,
	       human(used * chunk_bytes), human(total * chunk_bytes),
	       total ? (double)used / total : 0.0);
}

static void print_json(const struct repl *r)
{
	uint64_t cb = r->chunk * 512, rb = r->region * 512;
	double p = progress(r);
	char extra[64];

	puts("{");
	json_kv_str("name", r->name, true);
	json_kv_str("target", TARGET, true);
	json_kv_str("mode", mode_name[r->mode], true);
	json_kv_num("sectors", r->length);
	json_bytes("size", r->length * 512, NULL);
	json_kv_num("event_nr", r->info.event_nr);
	json_kv_num("open_count", r->info.open_count);
	printf("  \"suspended\": %s,\n", r->info.suspended ? "true" : "false");
	json_kv_str("table", r->table, true);
	json_kv_str("status", r->status, true);
	json_kv_str("state", r->state, true);
	switch (r->mode) {
	case M_SECONDARY:
		printf("  \"error\": %d,\n", r->error);
		json_kv_str("error_text", r->error ? strerror(r->error) : NULL, true);
		json_store("active", r->used_act, r->tot_act, cb);
		json_store("hidden", r->used_hid, r->tot_hid, cb);
		json_kv_num("checkpoints", r->checkpoints);
		snprintf(extra, sizeof(extra), "\"chunks\": %" PRIu64 ", ", r->to_commit);
		json_bytes("to_commit", r->to_commit * cb, extra);
		snprintf(extra, sizeof(extra), "\"sectors\": %" PRIu64 ", ", r->chunk);
		json_bytes("chunk_size", cb, extra);
		if (r->lwm >= 0)
			printf("  \"low_water_mark\": %" PRId64 ",\n", r->lwm);
		else
			puts("  \"low_water_mark\": null,");
		snprintf(extra, sizeof(extra), "\"chunks\": %" PRIu64 ", ", r->port_copy);
		json_bytes("port_copy", r->port_copy * cb, extra);
		json_kv_str("secondary_dev", r->dev[0], true);
		json_kv_str("hidden_dev", r->dev[1], true);
		json_kv_str("active_dev", r->dev[2], true);
		break;
	case M_PORT:
		json_kv_num("copies", r->copies);
		json_kv_str("secondary_dev", r->dev[0], true);
		break;
	case M_PRIMARY:
		printf("  \"error\": %d,\n", r->error);
		json_kv_str("error_text", r->error ? strerror(r->error) : NULL, true);
		json_kv_num("writes_forwarded", r->forwarded);
		snprintf(extra, sizeof(extra), "\"regions\": %" PRIu64 ", ", r->oos);
		json_bytes("out_of_sync", r->oos * rb, extra);
		json_kv_num("regions", r->regions);
		snprintf(extra, sizeof(extra), "\"sectors\": %" PRIu64 ", ", r->region);
		json_bytes("region_size", rb, extra);
		printf("  \"sync_all\": %s,\n", r->sync_all ? "true" : "false");
		json_kv_str("local_dev", r->dev[0], true);
		json_kv_str("remote_dev", r->dev[1], true);
		json_kv_str("metadata_dev", r->meta[0] ? r->meta : NULL, true);
		break;
	default:
		break;
	}
	if (p < 0)
		puts("  \"progress\": null");
	else
		printf("  \"progress\": %.4f\n", p);
	fputs("}", stdout);
}

#define FIELD "  %-17s "

static void print_store(const char *k, uint64_t used, uint64_t total, uint64_t cb)
{
	printf(FIELD "%" PRIu64 "/%" PRIu64 " slots, %s of %s (%.1f%%)\n", k, used, total,
	       human(used * cb), human(total * cb), total ? 100.0 * used / total : 0.0);
}

static void print_text(const struct repl *r)
{
	uint64_t cb = r->chunk * 512, rb = r->region * 512;
	double p = progress(r);

	printf("%s: %s %s, %s (%" PRIu64 " sectors), event %u, open %d%s\n", r->name,
	       TARGET, mode_name[r->mode], human(r->length * 512), r->length,
	       r->info.event_nr, r->info.open_count, r->info.suspended ? ", suspended" : "");
	printf(FIELD "%s\n", "state", r->state);
	switch (r->mode) {
	case M_SECONDARY:
		printf(FIELD "%d%s%s%s\n", "error", r->error, r->error ? " (" : "",
		       r->error ? strerror(r->error) : "", r->error ? ")" : "");
		print_store("active", r->used_act, r->tot_act, cb);
		print_store("hidden", r->used_hid, r->tot_hid, cb);
		printf(FIELD "%" PRIu64 "\n", "checkpoints", r->checkpoints);
		printf(FIELD "%" PRIu64 " chunks, %s\n", "to_commit", r->to_commit,
		       human(r->to_commit * cb));
		printf(FIELD "%" PRIu64 " bytes (%s)\n", "chunk_size", cb, human(cb));
		if (r->lwm >= 0)
			printf(FIELD "%" PRId64 " chunks\n", "low_water_mark", r->lwm);
		else
			printf(FIELD "none\n", "low_water_mark");
		printf(FIELD "%" PRIu64 " chunks, %s\n", "port_copy", r->port_copy,
		       human(r->port_copy * cb));
		printf(FIELD "%s\n", "secondary_dev", r->dev[0]);
		printf(FIELD "%s\n", "hidden_dev", r->dev[1]);
		printf(FIELD "%s\n", "active_dev", r->dev[2]);
		break;
	case M_PORT:
		printf(FIELD "%" PRIu64 "\n", "copies", r->copies);
		printf(FIELD "%s\n", "secondary_dev", r->dev[0]);
		break;
	case M_PRIMARY:
		printf(FIELD "%d%s%s%s\n", "error", r->error, r->error ? " (" : "",
		       r->error ? strerror(r->error) : "", r->error ? ")" : "");
		printf(FIELD "%" PRIu64 "\n", "writes_forwarded", r->forwarded);
		printf(FIELD "%" PRIu64 "/%" PRIu64 " regions, %s\n", "out_of_sync", r->oos,
		       r->regions, human(r->oos * rb));
		printf(FIELD "%" PRIu64 " bytes (%s)\n", "region_size", rb, human(rb));
		printf(FIELD "%s\n", "sync_all", r->sync_all ? "yes" : "no");
		printf(FIELD "%s\n", "local_dev", r->dev[0]);
		printf(FIELD "%s\n", "remote_dev", r->dev[1]);
		printf(FIELD "%s\n", "metadata_dev", r->meta[0] ? r->meta : "none (core log)");
		break;
	default:
		break;
	}
	if (p >= 0)
		printf(FIELD "%.1f%%\n", "progress", 100 * p);
	printf(FIELD "%s\n", "table", r->table);
	printf(FIELD "%s\n", "status", r->status);
}

/* ---- options ---------------------------------------------------------------------- */

static const char usage_text[] =
"Usage: replctl COMMAND [ARGS]\n"
"\n"
"  secondary create NAME --secondary DEV --hidden DEV --active DEV\n"
"                        [--chunk SIZE] [--low-water-mark N] [--port-copy SIZE]\n"
"  primary create NAME --local DEV --remote DEV [--metadata DEV]\n"
"                      [--region-size SIZE] [--sync-all]\n"
"  primary reload NAME --remote DEV [--metadata DEV] [--region-size SIZE]\n"
"                      [--sync-all] [--nolockfs]\n"
"  checkpoint NAME...\n"
"  stop NAME\n"
"  failover NAME [--wait]\n"
"  sync-rate NAME RATE          KiB/s, or with a k, m or g suffix; 0: unlimited\n"
"  commit-depth NAME N          1 to 64\n"
"  status [NAME] [--json]\n"
"  wait NAME [--until STATE]\n"
"  promote NAME --remote DEV [--metadata DEV] [--nolockfs]\n"
"  wipe --hidden DEV --active DEV [--yes]\n"
"  help\n"
"\n"
"SIZE: bytes, with an optional k, m or g suffix (KiB, MiB, GiB).\n"
"Exit status: 0 ok, 1 refused or failed, 2 usage, 3 no such device or wrong\n"
"kind of device, 4 wrong state, 5 device busy.  See replctl(8).\n";

struct opts {
	const char *secondary, *hidden, *active, *local, *remote, *metadata;
	const char *chunk, *lwm, *port_copy, *region, *until;
	bool sync_all, wait, json, yes, nolockfs;
	int nargs;
	char **args;
};

enum { O_SECONDARY = 256, O_HIDDEN, O_ACTIVE, O_CHUNK, O_LWM, O_PORT_COPY, O_LOCAL, O_REMOTE,
	O_METADATA, O_REGION, O_SYNC_ALL, O_WAIT, O_JSON, O_UNTIL, O_YES, O_NOLOCKFS, O_HELP };

static const struct option all_options[] = {
	{ "secondary", required_argument, NULL, O_SECONDARY },
	{ "hidden", required_argument, NULL, O_HIDDEN },
	{ "active", required_argument, NULL, O_ACTIVE },
	{ "chunk", required_argument, NULL, O_CHUNK },
	{ "low-water-mark", required_argument, NULL, O_LWM },
	{ "port-copy", required_argument, NULL, O_PORT_COPY },
	{ "local", required_argument, NULL, O_LOCAL },
	{ "remote", required_argument, NULL, O_REMOTE },
	{ "metadata", required_argument, NULL, O_METADATA },
	{ "region-size", required_argument, NULL, O_REGION },
	{ "sync-all", no_argument, NULL, O_SYNC_ALL },
	{ "wait", no_argument, NULL, O_WAIT },
	{ "json", no_argument, NULL, O_JSON },
	{ "until", required_argument, NULL, O_UNTIL },
	{ "yes", no_argument, NULL, O_YES },
	{ "nolockfs", no_argument, NULL, O_NOLOCKFS },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 }
};

/*
 * Parse the options of command CMD; ALLOWED lists the option values it takes.
 * Positional arguments end up in o->args.  Return: 0, -1 for --help, or
 * EX_USAGE (with the message).
 */
static int parse_opts(const char *cmd, int argc, char **argv, const int *allowed,
		      struct opts *o)
{
	int c, i;
	bool ok;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:", all_options, NULL)) != -1) {
		if (c == '?' || c == ':')
			return fail(EX_USAGE, "%s: %s: %s", cmd, argv[optind - 1],
				    c == ':' ? "needs an argument" : "unknown option");
		if (c == O_HELP)
			return -1;
		ok = false;
		for (i = 0; allowed[i]; i++)
			ok |= allowed[i] == c;
		if (!ok)
			return fail(EX_USAGE, "%s: %s: not an option of this command", cmd,
				    argv[optind - 1]);
		switch (c) {
		case O_SECONDARY: o->secondary = optarg; break;
		case O_HIDDEN: o->hidden = optarg; break;
		case O_ACTIVE: o->active = optarg; break;
		case O_CHUNK: o->chunk = optarg; break;
		case O_LWM: o->lwm = optarg; break;
		case O_PORT_COPY: o->port_copy = optarg; break;
		case O_LOCAL: o->local = optarg; break;
		case O_REMOTE: o->remote = optarg; break;
		case O_METADATA: o->metadata = optarg; break;
		case O_REGION: o->region = optarg; break;
		case O_SYNC_ALL: o->sync_all = true; break;
		case O_WAIT: o->wait = true; break;
		case O_JSON: o->json = true; break;
		case O_UNTIL: o->until = optarg; break;
		case O_YES: o->yes = true; break;
		case O_NOLOCKFS: o->nolockfs = true; break;
		}
	}
	o->nargs = argc - optind;
	o->args = argv + optind;
	return 0;
}

/* Parse, allowing options anywhere: collect the non-options first. */
static int parse(const char *cmd, int argc, char **argv, const int *allowed,
		 int min_args, int max_args, struct opts *o)
{
	char **opt = calloc(argc + 1, sizeof(*opt)), **pos = calloc(argc + 1, sizeof(*pos));
	int nopt = 1, npos = 0, i, r;
	bool takes_arg;
	const struct option *lo;

	opt[0] = argv[0];
	for (i = 1; i < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1]) {
			if (!strcmp(argv[i], "--")) {
				while (++i < argc)
					pos[npos++] = argv[i];
				break;
			}
			opt[nopt++] = argv[i];
			takes_arg = false;
			for (lo = all_options; lo->name; lo++)
				if (!strncmp(argv[i], "--", 2) && !strcmp(argv[i] + 2, lo->name))
					takes_arg = lo->has_arg == required_argument;
			if (takes_arg && i + 1 < argc)
				opt[nopt++] = argv[++i];
		} else {
			pos[npos++] = argv[i];
		}
	}
	r = parse_opts(cmd, nopt, opt, allowed, o);
	if (r)
		return r;
	if (o->nargs)
		return fail(EX_USAGE, "%s: unexpected argument: %s", cmd, o->args[0]);
	o->args = pos;
	o->nargs = npos;
	if (npos < min_args)
		return fail(EX_USAGE, "%s: missing %s (see replctl --help)", cmd,
			    min_args == 1 ? "device name" : "arguments");
	if (max_args >= 0 && npos > max_args)
		return fail(EX_USAGE, "%s: unexpected argument: %s", cmd, pos[max_args]);
	return 0;
}

static int need(const char *cmd, const char *val, const char *opt)
{
	if (val)
		return 0;
	return fail(EX_USAGE, "%s: %s DEV is required", cmd, opt);
}

/* ---- create ---------------------------------------------------------------------- */

static int dev_exists(const char *name)
{
	struct dm_task *dmt = task(DM_DEVICE_INFO, name);
	struct dm_info info;
	int r = 0;

	if (dmt && !run(dmt, false) && dm_task_get_info(dmt, &info))
		r = info.exists;
	if (dmt)
		dm_task_destroy(dmt);
	return r;
}

/* Create NAME with one replication target; 0, or errno with WHY set. */
static int create_dev(const char *name, uint64_t len, const char *params, char *why,
		      size_t n)
{
	int err;

	if (dev_exists(name)) {
		snprintf(why, n, "%s: a device of that name exists already", name);
		return EEXIST;
	}
	kmsg_mark();
	err = dm_load(DM_DEVICE_CREATE, name, len, params);
	if (err)
		snprintf(why, n, "%s: the kernel refused the table '%s': %s%s", name, params,
			 strerror(err), kernel_says());
	return err;
}

static int create(const char *name, uint64_t len, const char *params)
{
	char why[1024];

	if (create_dev(name, len, params, why, sizeof(why)))
		return fail(EX_FAIL, "%s", why);
	return 0;
}

static int cmd_secondary(int argc, char **argv)
{
	static const int allowed[] = { O_SECONDARY, O_HIDDEN, O_ACTIVE, O_CHUNK, O_LWM,
				       O_PORT_COPY, 0 };
	char params[512], feat[96] = "", port[DM_NAME_LEN + 8], why[1024];
	uint64_t chunk = DEFAULT_CHUNK, lwm = 0, copy = 0, size, junk;
	int nfeat = 0;
	const char *name;
	struct opts o;
	int r;

	if (argc < 2 || strcmp(argv[1], "create"))
		return fail(EX_USAGE, "secondary: expected 'secondary create NAME ...'");
	r = parse("secondary create", argc - 1, argv + 1, allowed, 1, 1, &o);
	if (r)
		return r < 0 ? (fputs(usage_text, stdout), EX_OK) : r;
	name = o.args[0];
	if ((r = need("secondary create", o.secondary, "--secondary")) ||
	    (r = need("secondary create", o.hidden, "--hidden")) ||
	    (r = need("secondary create", o.active, "--active")))
		return r;
	if (o.chunk && (!parse_size(o.chunk, &chunk) || !power_of_two(chunk) ||
			chunk < 4096 || chunk > (1 << 20)))
		return fail(EX_USAGE, "secondary create: --chunk %s: expected a power of two from 4k to 1m",
			    o.chunk);
	if (o.lwm && !parse_u64(o.lwm, &lwm))
		return fail(EX_USAGE, "secondary create: --low-water-mark %s: expected a number of chunks",
			    o.lwm);
	if (o.port_copy && (!parse_size(o.port_copy, &copy) || !power_of_two(copy) ||
			    copy < chunk || copy / chunk > 256))
		return fail(EX_USAGE, "secondary create: --port-copy %s: expected a power of two "
			    "from the chunk size to 256 chunks", o.port_copy);
	if (strlen(name) + 6 > DM_NAME_LEN)
		return fail(EX_USAGE, "secondary create: %s: name too long", name);
	if ((r = blockdev_size(o.secondary, "secondary device", &size)) ||
	    (r = blockdev_size(o.hidden, "hidden store", &junk)) ||
	    (r = blockdev_size(o.active, "active store", &junk)))
		return r;
	if (size < chunk)
		return fail(EX_FAIL, "secondary device %s is smaller than one chunk", o.secondary);
	snprintf(port, sizeof(port), "%s-port", name);
	if (dev_exists(name))
		return fail(EX_FAIL, "%s: a device of that name exists already", name);
	if (dev_exists(port))
		return fail(EX_FAIL, "%s: a device of that name exists already", port);
	if (o.lwm) {
		snprintf(feat, sizeof(feat), " low_water_mark %" PRIu64, lwm);
		nfeat += 2;
	}
	if (o.port_copy) {
		snprintf(feat + strlen(feat), sizeof(feat) - strlen(feat),
			 " port_copy_chunks %" PRIu64, copy / chunk);
		nfeat += 2;
	}
	snprintf(params, sizeof(params), "secondary %s %s %s %" PRIu64 " %d%s", o.secondary,
		 o.hidden, o.active, chunk / 512, nfeat, feat);
	r = create(name, size / 512, params);
	if (r)
		return r;
	snprintf(params, sizeof(params), "port %s", o.secondary);
	if (!create_dev(port, size / 512, params, why, sizeof(why)))
		return EX_OK;
	r = simple(DM_DEVICE_REMOVE, name, true);
	if (r)
		return fail(EX_FAIL, "%s; and %s could not be removed again: %s", why, name,
			    strerror(r));
	return fail(EX_FAIL, "%s; %s was removed again", why, name);
}

/* After a failed resume: what NAME is left doing, for the error line. */
static const char *left_after_resume(const char *name, const char *serving)
{
	struct dm_task *dmt = task(DM_DEVICE_INFO, name);
	struct dm_info info;
	bool suspended = false;

	if (dmt && !run(dmt, false) && dm_task_get_info(dmt, &info))
		suspended = info.exists && info.suspended;
	if (dmt)
		dm_task_destroy(dmt);
	return suspended ? "; it is left suspended: resume it, or reload its old table" : serving;
}

/* The table parameters of a primary; region in bytes, 0 for the default. */
static void primary_params(char *params, size_t n, const char *local, const char *remote,
			   const char *metadata, uint64_t region, bool sync_all)
{
	char feat[256] = "";
	int nfeat = 0;

	if (metadata) {
		nfeat += 2;
		snprintf(feat + strlen(feat), sizeof(feat) - strlen(feat), " metadata %s",
			 metadata);
	}
	if (region) {
		nfeat += 2;
		snprintf(feat + strlen(feat), sizeof(feat) - strlen(feat),
			 " region_size %" PRIu64, region / 512);
	}
	if (sync_all) {
		nfeat++;
		snprintf(feat + strlen(feat), sizeof(feat) - strlen(feat), " sync_all");
	}
	snprintf(params, n, "primary %s %s %d%s", local, remote, nfeat, feat);
}

/* --region-size: 0 with *region set (0 when absent), or an exit code */
static int region_opt(const char *cmd, const struct opts *o, uint64_t *region)
{
	*region = 0;
	if (o->region && (!parse_size(o->region, region) || !power_of_two(*region) ||
			  *region < 4096 || *region > (1ULL << 30)))
		return fail(EX_USAGE, "%s: --region-size %s: expected a power of two from 4k to 1g",
			    cmd, o->region);
	return 0;
}

static int primary_create(int argc, char **argv)
{
	static const int allowed[] = { O_LOCAL, O_REMOTE, O_METADATA, O_REGION, O_SYNC_ALL, 0 };
	uint64_t lsize, rsize, msize, region;
	char params[512];
	struct opts o;
	int r;

	r = parse("primary create", argc - 1, argv + 1, allowed, 1, 1, &o);
	if (r)
		return r < 0 ? (fputs(usage_text, stdout), EX_OK) : r;
	if ((r = need("primary create", o.local, "--local")) ||
	    (r = need("primary create", o.remote, "--remote")) ||
	    (r = region_opt("primary create", &o, &region)))
		return r;
	if ((r = blockdev_size(o.local, "local device", &lsize)) ||
	    (r = blockdev_size(o.remote, "remote device", &rsize)) ||
	    (o.metadata && (r = blockdev_size(o.metadata, "metadata device", &msize))))
		return r;
	if (rsize < lsize)
		return fail(EX_FAIL, "remote device %s (%s) is smaller than local device %s (%s)",
			    o.remote, human(rsize), o.local, human(lsize));
	primary_params(params, sizeof(params), o.local, o.remote, o.metadata, region,
		       o.sync_all);
	return create(o.args[0], lsize / 512, params);
}

/*
 * primary reload NAME --remote DEV: the same primary onto a new remote (a
 * reconnect, or a secondary that joins), live.  Its local device, metadata
 * device and region size are kept unless given; the new table takes over the
 * out-of-sync regions (only they are copied), or all of them with --sync-all.
 */
static int primary_reload(int argc, char **argv)
{
	static const int allowed[] = { O_REMOTE, O_METADATA, O_REGION, O_SYNC_ALL, O_NOLOCKFS, 0 };
	char params[512], why[600];
	uint64_t rsize, msize, region;
	struct repl r;
	struct opts o;
	int rc, err;

	rc = parse("primary reload", argc - 1, argv + 1, allowed, 1, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if ((rc = need("primary reload", o.remote, "--remote")) ||
	    (rc = region_opt("primary reload", &o, &region)))
		return rc;
	if ((rc = repl_get(o.args[0], &r)) ||
	    (rc = want_mode(&r, 1U << M_PRIMARY, "primary reload")))
		return rc;
	if ((rc = blockdev_size(o.remote, "remote device", &rsize)) ||
	    (o.metadata && (rc = blockdev_size(o.metadata, "metadata device", &msize))))
		return rc;
	if (rsize < r.length * 512)
		return fail(EX_FAIL, "remote device %s (%s) is smaller than %s (%s)", o.remote,
			    human(rsize), r.name, human(r.length * 512));
	if (!region && strstr(r.table, "region_size"))
		region = r.region * 512;
	primary_params(params, sizeof(params), r.dev[0], o.remote,
		       o.metadata ? o.metadata : r.meta[0] ? r.meta : NULL, region,
		       o.sync_all);
	kmsg_mark();
	err = dm_load(DM_DEVICE_RELOAD, r.name, r.length, params);
	if (err) {
		snprintf(why, sizeof(why), "%s", kernel_says());
		simple(DM_DEVICE_CLEAR, r.name, false);
		return fail(EX_FAIL, "%s: primary reload: the kernel refused the table '%s': %s%s; the old table keeps serving",
			    r.name, params, strerror(err), why);
	}
	kmsg_mark();
	err = resume(r.name, o.nolockfs);
	if (err) {
		snprintf(why, sizeof(why), "%s", kernel_says());
		simple(DM_DEVICE_CLEAR, r.name, false);
		return fail(EX_FAIL, "%s: primary reload: resuming with the new table failed: %s%s%s%s",
			    r.name, strerror(err), why,
			    err == EBUSY && !o.nolockfs ? " (a frozen file system on it? see --nolockfs)" : "",
			    left_after_resume(r.name, "; the old table keeps serving"));
	}
	printf("%s: reloaded: mirroring %s to %s\n", r.name, r.dev[0], o.remote);
	return EX_OK;
}

static int cmd_primary(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "create"))
		return primary_create(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "reload"))
		return primary_reload(argc, argv);
	return fail(EX_USAGE, "primary: expected 'primary create NAME ...' or 'primary reload NAME ...'");
}

/* ---- messages --------------------------------------------------------------------- */

static int send(const struct repl *r, const char *msg)
{
	int err;

	kmsg_mark();
	err = dm_message(r->name, msg);
	if (err)
		return fail(EX_FAIL, "%s: %s refused: %s%s", r->name, msg, strerror(err),
			    kernel_says());
	return 0;
}

static int failed_mode(const struct repl *r)
{
	return fail(EX_STATE, "%s: the session failed (error %d): fix the device and reload the table",
		    r->name, r->error);
}

static int cmd_checkpoint(int argc, char **argv)
{
	static const int allowed[] = { 0 };
	struct opts o;
	struct repl r;
	int i, rc;

	rc = parse("checkpoint", argc, argv, allowed, 1, -1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	for (i = 0; i < o.nargs; i++) {
		rc = repl_get(o.args[i], &r);
		if (!rc)
			rc = want_mode(&r, 1U << M_SECONDARY | 1U << M_PRIMARY, "checkpoint");
		if (!rc && !strcmp(r.state, "failed"))
			rc = failed_mode(&r);
		else if (!rc && strcmp(r.state, "running"))
			rc = fail(EX_STATE, "%s: checkpoint: the device is %s, not running", r.name,
				  r.state);
		if (!rc)
			rc = send(&r, "checkpoint");
		if (rc)
			return rc;
		snprintf(fail_suffix + strlen(fail_suffix), sizeof(fail_suffix) - strlen(fail_suffix),
			 "%s%s", i ? ", " : "; checkpointed before the failure: ", o.args[i]);
	}
	return EX_OK;
}

static int cmd_stop(int argc, char **argv)
{
	static const int allowed[] = { 0 };
	struct opts o;
	struct repl r;
	int rc;

	rc = parse("stop", argc, argv, allowed, 1, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if ((rc = repl_get(o.args[0], &r)) ||
	    (rc = want_mode(&r, 1U << M_SECONDARY | 1U << M_PRIMARY, "stop")))
		return rc;
	if (!strcmp(r.state, "failed"))
		return failed_mode(&r);
	if (!strcmp(r.state, "done"))
		return EX_OK;	/* stopped already */
	if (r.mode == M_SECONDARY && strcmp(r.state, "running"))
		return fail(EX_STATE, "%s: stop: the secondary is %s: it can only be stopped while running",
			    r.name, r.state);
	return send(&r, "stop");
}

static int cmd_sync_rate(int argc, char **argv)
{
	static const int allowed[] = { 0 };
	char msg[64], num[32];
	uint64_t rate;
	struct opts o;
	struct repl r;
	size_t n;
	int rc;

	rc = parse("sync-rate", argc, argv, allowed, 2, 2, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	/* a plain number is KiB/s; a k, m or g suffix (optionally "/s") gives the unit */
	snprintf(num, sizeof(num), "%s", o.args[1]);
	n = strlen(num);
	if (n > 2 && !strcmp(num + n - 2, "/s"))
		num[n - 2] = '\0';
	n = strlen(num);
	if (n && strchr("kKmMgG", num[n - 1])) {
		if (!parse_size(num, &rate))
			goto bad;
		rate /= 1024;
	} else if (!parse_u64(num, &rate)) {
		goto bad;
	}
	if ((rc = repl_get(o.args[0], &r)) || (rc = want_mode(&r, 1U << M_PRIMARY, "sync-rate")))
		return rc;
	snprintf(msg, sizeof(msg), "sync_rate %" PRIu64, rate);
	return send(&r, msg);
bad:
	return fail(EX_USAGE, "sync-rate: %s: expected KiB/s (or a number with k, m or g), 0 for unlimited",
		    o.args[1]);
}

static int cmd_commit_depth(int argc, char **argv)
{
	static const int allowed[] = { 0 };
	uint64_t depth;
	char msg[64];
	struct opts o;
	struct repl r;
	int rc;

	rc = parse("commit-depth", argc, argv, allowed, 2, 2, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if (!parse_u64(o.args[1], &depth) || depth < 1 || depth > 64)
		return fail(EX_USAGE, "commit-depth: %s: expected a number from 1 to 64", o.args[1]);
	if ((rc = repl_get(o.args[0], &r)) ||
	    (rc = want_mode(&r, 1U << M_SECONDARY, "commit-depth")))
		return rc;
	if (!strcmp(r.state, "failed"))
		return failed_mode(&r);
	snprintf(msg, sizeof(msg), "commit_depth %" PRIu64, depth);
	return send(&r, msg);
}

/* ---- status ------------------------------------------------------------------------ */

static int cmd_status(int argc, char **argv)
{
	static const int allowed[] = { O_JSON, 0 };
	struct opts o;
	struct repl r;
	char **names;
	int rc, i, shown = 0;

	rc = parse("status", argc, argv, allowed, 0, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if (o.nargs) {
		rc = repl_get(o.args[0], &r);
		if (rc)
			return rc;
		if (o.json) {
			print_json(&r);
			putchar('\n');
		} else {
			print_text(&r);
		}
		return EX_OK;
	}
	names = dm_names();
	if (!names)
		return fail(EX_FAIL, "cannot list the device-mapper devices (is dm-mod loaded? are you root?)");
	if (o.json)
		putchar('[');
	for (i = 0; names[i]; i++) {
		if (repl_read(names[i], &r))
			continue;
		if (o.json) {
			if (shown)
				putchar(',');
			putchar('\n');
			print_json(&r);
		} else {
			if (shown)
				putchar('\n');
			print_text(&r);
		}
		shown++;
	}
	if (o.json)
		puts("\n]");
	for (i = 0; names[i]; i++)
		free(names[i]);
	free(names);
	return EX_OK;
}

/* ---- wait ---------------------------------------------------------------------------- */

static const char *const sec_states[] = { "running", "failover", "failover_failed", "done",
	"failed", NULL };
static const char *const port_states[] = { "running", "failover", "failover_failed", "done",
	"failed", "unloaded", NULL };
static const char *const pri_states[] = { "running", "syncing", "degraded", "done", NULL };

static const char *const *states_of(enum mode m)
{
	return m == M_PRIMARY ? pri_states : m == M_PORT ? port_states : sec_states;
}

static bool valid_state(enum mode m, const char *s)
{
	const char *const *v;

	for (v = states_of(m); *v; v++)
		if (!strcmp(*v, s))
			return true;
	return false;
}

/* Can a device of mode M in STATE still reach UNTIL (without an operator's reload)? */
static bool reachable(enum mode m, const char *state, const char *until)
{
	if (!strcmp(state, until))
		return true;
	if (m == M_PRIMARY) {
		if (!strcmp(state, "done"))
			return false;
		if (!strcmp(state, "degraded"))
			return !strcmp(until, "done");
		return true;
	}
	if (!strcmp(state, "failed"))
		return false;
	if (!strcmp(until, "running"))
		return !strcmp(state, "unloaded");
	if (!strcmp(until, "failover") || !strcmp(until, "failover_failed"))
		return strcmp(state, "done");
	if (!strcmp(until, "done"))
		return strcmp(state, "failover_failed");
	return true;
}

/* Arm the control fd: poll() returns POLLIN after any later dm event. */
static int arm(int cfd)
{
	struct dm_ioctl io;

	memset(&io, 0, sizeof(io));
	io.version[0] = DM_VERSION_MAJOR;
	io.version[1] = 0;
	io.version[2] = 0;
	io.data_size = sizeof(io);
	return ioctl(cfd, DM_DEV_ARM_POLL, &io);
}

struct meter {
	bool active;
	uint64_t total, start_left;
	double t0, last_line;
	bool bar;			/* a bar is drawn on the current line */
};

static void fmt_secs(double s, char *buf, size_t n)
{
	if (s < 60)
		snprintf(buf, n, "%.0f s", s);
	else if (s < 3600)
		snprintf(buf, n, "%d min %02d s", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%d h %02d min", (int)s / 3600, (int)s % 3600 / 60);
}

/* progress: left units of unit bytes; draw a bar (tty) or print a line */
static void meter_show(struct meter *m, const char *name, const char *what, uint64_t left,
		       uint64_t unit, bool tty)
{
	double t = now(), rate = 0, frac;
	char eta[32] = "?", bar[41];
	int i, w;

	if (!m->active) {
		m->active = true;
		m->t0 = t;
		m->start_left = left;
		m->last_line = 0;
	}
	if (left > m->total)
		m->total = left;
	if (m->start_left < left)
		m->start_left = left;
	frac = m->total ? 1 - (double)left / m->total : 1;
	if (t > m->t0 && m->start_left > left)
		rate = (m->start_left - left) / (t - m->t0);
	if (rate > 0)
		fmt_secs(left / rate, eta, sizeof(eta));
	if (tty) {
		w = (int)(frac * 40);
		for (i = 0; i < 40; i++)
			bar[i] = i < w ? '#' : '-';
		bar[40] = '\0';
		printf("\r%s: [%s] %5.1f%%  %" PRIu64 "/%" PRIu64 " %s left  %s/s  %s left\033[K",
		       name, bar, 100 * frac, left, m->total, what, human((uint64_t)(rate * unit)),
		       eta);
		m->bar = true;
	} else {
		if (t - m->last_line < 1)
			return;
		printf("%s: progress %.1f%%, %" PRIu64 " of %" PRIu64 " %s left, %s/s, %s left\n",
		       name, 100 * frac, left, m->total, what, human((uint64_t)(rate * unit)), eta);
		m->last_line = t;
	}
	fflush(stdout);
}

/*
 * Follow NAME's status through dm events until it is in UNTIL (NULL: until
 * its next event).  Every new status line is printed; in a progress phase
 * (a secondary failing over, a primary syncing) progress is redrawn on a
 * timer, since the target raises events at state changes only.  TOTAL is the
 * failover's size when known (to_commit before it began), else 0.
 * Return: 0, or an exit code: UNREACHABLE when the device went where UNTIL
 * can no longer be reached, EX_NODEV when it was removed.
 */
static int follow(const char *name, const char *until, int unreachable, uint64_t total)
{
	bool tty = isatty(STDOUT_FILENO), first = true;
	char last_state[32] = "", last_status[1024] = "";
	struct meter m = { .total = total };
	uint32_t last_event = 0;
	struct pollfd pfd;
	enum mode mode0 = M_NONE;
	struct repl r;
	int cfd, err, timeout;

	cfd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	if (cfd < 0)
		return fail(EX_FAIL, "/dev/mapper/control: %s", strerror(errno));
	for (;;) {
		if (arm(cfd) < 0) {
			close(cfd);
			return fail(EX_FAIL, "DM_DEV_ARM_POLL: %s (the kernel's dm is older than 4.13?)",
				    strerror(errno));
		}
		err = repl_read(name, &r);
		if (err) {
			if (m.bar)
				putchar('\n');
			close(cfd);
			if (err == ENXIO)
				return fail(EX_NODEV, "%s: %s", name,
					    first ? "no such device" : "the device was removed");
			if (first)
				return repl_get(name, &r);
			return fail(EX_NODEV, "%s: no longer a replication device (%s)", name,
				    r.target[0] ? r.target : "no table");
		}
		if (first) {
			mode0 = r.mode;
			if (until && !valid_state(r.mode, until)) {
				close(cfd);
				return fail(EX_USAGE, "wait: %s: %s is not a state of a %s", name,
					    until, mode_name[r.mode]);
			}
		}
		/* a new status line: a new state, or an event that changed it */
		if (first || strcmp(r.state, last_state) ||
		    (r.info.event_nr != last_event && (!until || strcmp(r.status, last_status)))) {
			if (m.bar) {
				putchar('\n');
				m.bar = false;
			}
			printf("%s: %s\n", name, r.status);
			fflush(stdout);
			snprintf(last_status, sizeof(last_status), "%s", r.status);
		}
		if (!first && !until && r.info.event_nr != last_event) {
			close(cfd);
			return EX_OK;
		}
		last_event = r.info.event_nr;
		snprintf(last_state, sizeof(last_state), "%s", r.state);
		if (r.mode != mode0 && until && !valid_state(r.mode, until)) {
			close(cfd);
			return fail(unreachable, "%s: is now a %s: it has no state %s", name,
				    mode_name[r.mode], until);
		}
		if (until && !strcmp(r.state, until)) {
			close(cfd);
			return EX_OK;
		}
		if (until && !reachable(r.mode, r.state, until)) {
			close(cfd);
			if (r.error)
				return fail(unreachable, "%s: is %s (error %d, %s): it cannot reach %s",
					    name, r.state, r.error, strerror(r.error), until);
			return fail(unreachable, "%s: is %s: it cannot reach %s", name, r.state,
				    until);
		}
		timeout = -1;
		if (r.mode == M_SECONDARY && !strcmp(r.state, "failover")) {
			meter_show(&m, name, "chunks", r.to_commit, r.chunk * 512, tty);
			timeout = tty ? 250 : 1000;
		} else if (r.mode == M_PRIMARY && !strcmp(r.state, "syncing")) {
			meter_show(&m, name, "regions", r.oos, r.region * 512, tty);
			timeout = tty ? 250 : 1000;
		} else {
			m.active = false;
		}
		first = false;
		pfd.fd = cfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
			close(cfd);
			return fail(EX_FAIL, "poll: %s", strerror(errno));
		}
	}
}

static int cmd_wait(int argc, char **argv)
{
	static const int allowed[] = { O_UNTIL, 0 };
	struct opts o;
	int rc;

	rc = parse("wait", argc, argv, allowed, 1, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if (o.until && !valid_state(M_SECONDARY, o.until) && !valid_state(M_PORT, o.until) &&
	    !valid_state(M_PRIMARY, o.until))
		return fail(EX_USAGE, "wait: --until %s: not a state", o.until);
	return follow(o.args[0], o.until, EX_STATE, 0);
}

static int cmd_failover(int argc, char **argv)
{
	static const int allowed[] = { O_WAIT, 0 };
	struct opts o;
	struct repl r;
	int rc;

	rc = parse("failover", argc, argv, allowed, 1, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if ((rc = repl_get(o.args[0], &r)) || (rc = want_mode(&r, 1U << M_SECONDARY, "failover")))
		return rc;
	if (!strcmp(r.state, "failed"))
		return failed_mode(&r);
	if (!strcmp(r.state, "done"))
		return fail(EX_STATE, "%s: failover: the secondary is done already: nothing to merge",
			    r.name);
	if (!strcmp(r.state, "running") || !strcmp(r.state, "failover_failed")) {
		rc = send(&r, "failover");
		if (rc)
			return rc;
	}
	if (!o.wait)
		return EX_OK;
	return follow(r.name, "done", EX_FAIL, r.to_commit);
}

/* ---- promote -------------------------------------------------------------------------- */

static int cmd_promote(int argc, char **argv)
{
	static const int allowed[] = { O_REMOTE, O_METADATA, O_NOLOCKFS, 0 };
	char params[512], **names;
	uint64_t rsize, junk;
	struct repl r, p;
	struct opts o;
	int rc, i, err, nports = 0;

	rc = parse("promote", argc, argv, allowed, 1, 1, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if ((rc = need("promote", o.remote, "--remote")))
		return rc;
	if ((rc = repl_get(o.args[0], &r)) || (rc = want_mode(&r, 1U << M_SECONDARY, "promote")))
		return rc;
	if (strcmp(r.state, "done"))
		return fail(EX_STATE, "%s: promote: the secondary is %s: only a secondary that is done (after failover) can be promoted",
			    r.name, r.state);
	if ((rc = blockdev_size(o.remote, "remote device", &rsize)) ||
	    (o.metadata && (rc = blockdev_size(o.metadata, "metadata device", &junk))))
		return rc;
	if (rsize < r.length * 512)
		return fail(EX_FAIL, "remote device %s (%s) is smaller than %s (%s)", o.remote,
			    human(rsize), r.name, human(r.length * 512));

	/* The ports over this secondary device: none may be open. */
	names = dm_names();
	if (!names)
		return fail(EX_FAIL, "cannot list the device-mapper devices");
	for (i = 0; names[i]; i++) {
		if (repl_read(names[i], &p) || p.mode != M_PORT || strcmp(p.dev[0], r.dev[0])) {
			free(names[i]);
			names[i] = strdup("");
			continue;
		}
		nports++;
		if (p.info.open_count > 0) {
			rc = fail(EX_BUSY, "%s: promote: its port %s is open (%d opener%s, e.g. an NBD server exporting it): close it first; nothing was changed",
				  r.name, p.name, p.info.open_count, p.info.open_count > 1 ? "s" : "");
			goto out;
		}
	}
	for (i = 0; nports && names[i]; i++) {
		if (!names[i][0])
			continue;
		err = simple(DM_DEVICE_REMOVE, names[i], true);
		if (err) {
			rc = fail(EX_FAIL, "%s: promote: cannot remove its port %s: %s", r.name,
				  names[i], strerror(err));
			goto out;
		}
		printf("%s: removed port %s\n", r.name, names[i]);
	}

	if (o.metadata)
		snprintf(params, sizeof(params), "primary %s %s 3 metadata %s sync_all", r.dev[0],
			 o.remote, o.metadata);
	else
		snprintf(params, sizeof(params), "primary %s %s 1 sync_all", r.dev[0], o.remote);
	kmsg_mark();
	err = dm_load(DM_DEVICE_RELOAD, r.name, r.length, params);
	if (err) {
		const char *why = kernel_says();
		char saved[600];

		snprintf(saved, sizeof(saved), "%s", why);
		simple(DM_DEVICE_CLEAR, r.name, false);
		rc = fail(EX_FAIL, "%s: promote: the kernel refused the table '%s': %s%s; the secondary table keeps serving",
			  r.name, params, strerror(err), saved);
		goto out;
	}
	kmsg_mark();
	err = resume(r.name, o.nolockfs);
	if (err) {
		const char *why = kernel_says();
		char saved[600];

		snprintf(saved, sizeof(saved), "%s", why);
		simple(DM_DEVICE_CLEAR, r.name, false);
		rc = fail(EX_FAIL, "%s: promote: resuming with the primary table failed: %s%s%s%s",
			  r.name, strerror(err), saved,
			  err == EBUSY && !o.nolockfs ? " (a frozen file system on it? see --nolockfs)" : "",
			  left_after_resume(r.name, "; the secondary table keeps serving"));
		goto out;
	}
	printf("%s: promoted: now a primary mirroring %s to %s (syncing)\n", r.name, r.dev[0],
	       o.remote);
	rc = EX_OK;
out:
	for (i = 0; names[i]; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* ---- wipe ---------------------------------------------------------------------------- */

static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	int k;

	while (n--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78U & -(crc & 1));
	}
	return crc;
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool header_valid(const uint8_t *h)
{
	return le32(h + 4) == 0x4c504552U && le32(h) == crc32c(~0U, h + 4, 508);
}

/* Describe what the first 4 KiB of a store hold. */
static void describe(const char *what, const char *path, const uint8_t *buf, bool busy)
{
	static const char *const st[] = { "running", "failover", "failover_failed", "done" };
	const uint8_t *h = NULL;
	uint32_t state, role;
	bool a, b;
	int i;

	a = header_valid(buf);
	b = header_valid(buf + 512);
	if (a && b)
		h = le64(buf + 16) >= le64(buf + 512 + 16) ? buf : buf + 512;
	else if (a || b)
		h = a ? buf : buf + 512;
	printf("%s %s%s: ", what, path, busy ? " (in use)" : "");
	if (!h) {
		for (i = 0; i < WIPE_BYTES && !buf[i]; i++)
			;
		puts(i == WIPE_BYTES ? "blank" :
		     "no valid REPL header, not blank (not a dm-replication store, or a damaged one)");
		return;
	}
	state = le32(h + 48);
	role = le32(h + 12);
	printf("REPL store, version %u, role %s, state %s, generation %" PRIu64
	       ", epoch %" PRIu64 ", chunk %u sectors, %" PRIu64 " slots, session ",
	       le32(h + 8), role == 1 ? "hidden" : role == 2 ? "active" : "unknown",
	       state < 4 ? st[state] : "unknown", le64(h + 16), le64(h + 24), le32(h + 52),
	       le64(h + 64));
	for (i = 0; i < 16; i++)
		printf("%02x", h[32 + i]);
	putchar('\n');
}

static int cmd_wipe(int argc, char **argv)
{
	static const int allowed[] = { O_HIDDEN, O_ACTIVE, O_YES, 0 };
	const char *what[2] = { "hidden", "active" }, *path[2];
	int fd[2] = { -1, -1 }, rc = EX_OK, i;
	bool busy[2] = { false, false };
	struct stat st[2];
	uint8_t *buf;
	struct opts o;

	rc = parse("wipe", argc, argv, allowed, 0, 0, &o);
	if (rc)
		return rc < 0 ? (fputs(usage_text, stdout), EX_OK) : rc;
	if ((rc = need("wipe", o.hidden, "--hidden")) || (rc = need("wipe", o.active, "--active")))
		return rc;
	path[0] = o.hidden;
	path[1] = o.active;
	for (i = 0; i < 2; i++) {
		if (stat(path[i], &st[i]) < 0)
			return fail(EX_NODEV, "wipe: %s store %s: %s", what[i], path[i],
				    strerror(errno));
		if (!S_ISBLK(st[i].st_mode))
			return fail(EX_NODEV, "wipe: %s store %s: not a block device", what[i],
				    path[i]);
	}
	if (st[0].st_rdev == st[1].st_rdev)
		return fail(EX_USAGE, "wipe: --hidden and --active are the same device");
	if (posix_memalign((void **)&buf, 4096, WIPE_BYTES))
		return fail(EX_FAIL, "out of memory");

	for (i = 0; i < 2; i++) {
		fd[i] = open(path[i], (o.yes ? O_RDWR : O_RDONLY) | O_DIRECT | O_EXCL | O_CLOEXEC);
		if (fd[i] < 0 && errno == EBUSY) {
			busy[i] = true;
			if (o.yes) {
				rc = fail(EX_BUSY, "wipe: %s store %s is in use (held by a loaded table, or mounted): remove the device using it first; nothing was changed",
					  what[i], path[i]);
				goto out;
			}
			fd[i] = open(path[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
		}
		if (fd[i] < 0) {
			rc = fail(EX_FAIL, "wipe: %s store %s: %s", what[i], path[i], strerror(errno));
			goto out;
		}
	}
	if (!o.yes) {
		for (i = 0; i < 2; i++) {
			if (pread(fd[i], buf, WIPE_BYTES, 0) != WIPE_BYTES) {
				rc = fail(EX_FAIL, "wipe: cannot read %s: %s", path[i], strerror(errno));
				goto out;
			}
			describe(what[i], path[i], buf, busy[i]);
		}
		rc = fail(EX_USAGE, "wipe: would zero the first 4 KiB of both stores, ending their session: add --yes to do it; nothing was changed");
		goto out;
	}
	memset(buf, 0, WIPE_BYTES);
	for (i = 0; i < 2; i++) {
		if (pwrite(fd[i], buf, WIPE_BYTES, 0) != WIPE_BYTES || fsync(fd[i]) < 0) {
			rc = fail(EX_FAIL, "wipe: cannot zero %s: %s%s", path[i], strerror(errno),
				  i ? " (the hidden store was zeroed already)" : "");
			goto out;
		}
	}
	printf("wiped %s and %s: the next secondary over them starts a new session\n",
	       path[0], path[1]);
	rc = EX_OK;
out:
	for (i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(buf);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "secondary", cmd_secondary },
	{ "primary", cmd_primary },
	{ "checkpoint", cmd_checkpoint },
	{ "stop", cmd_stop },
	{ "failover", cmd_failover },
	{ "sync-rate", cmd_sync_rate },
	{ "commit-depth", cmd_commit_depth },
	{ "status", cmd_status },
	{ "wait", cmd_wait },
	{ "promote", cmd_promote },
	{ "wipe", cmd_wipe },
};

int main(int argc, char **argv)
{
	size_t i;
	int rc;

	debug = getenv("REPLCTL_DEBUG") != NULL;
	if (argc < 2)
		return fail(EX_USAGE, "no command given (see replctl --help)");
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return EX_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		dm_log_with_errno_init(dm_log);
		rc = commands[i].fn(argc - 1, argv + 1);
		dm_lib_release();
		dm_lib_exit();
		return rc;
	}
	return fail(EX_USAGE, "%s: unknown command (see replctl --help)", argv[1]);
}
