/* SPDX-License-Identifier: MIT */
/*
 * dispatch, private: the text pool and the UTF-8 check shared by the engine's
 * files. Nothing here is part of the module's contract.
 */
#ifndef SURGE_DISPATCH_PVT_H
#define SURGE_DISPATCH_PVT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Held text lives in one preallocated arena cut into size classes; a string
 * takes one block of the smallest class that fits (or the next larger class
 * with a free block), so it is contiguous and freeing is O(1).
 */
#define DISP_POOL_CLASSES   5
#define DISP_TEXT_MAX_BYTES 16384u /* the largest block: the longest string the engine holds */

/* A held string: a block of the pool, or nothing when len is 0. */
struct disp_text {
	uint32_t off; /* byte offset of the block in the arena */
	uint16_t len; /* bytes used */
	uint8_t cls;  /* size class of the block */
	uint8_t tag;  /* the holder's own byte (a spare one): the pool clears it, never reads it */
};

struct disp_pool_class {
	uint32_t base;      /* offset of the class's first block */
	uint32_t size;      /* bytes per block */
	uint32_t count;     /* blocks in the class */
	uint32_t bump;      /* blocks never used yet start here: no start-up pass over the arena */
	uint32_t free_head; /* offset of the first freed block, UINT32_MAX if none */
	uint32_t used;      /* blocks held */
};

struct disp_pool {
	char *mem;
	struct disp_pool_class cls[DISP_POOL_CLASSES];
	uint32_t total_blocks;
	uint32_t used_blocks;
};

/* Carve `bytes` into the classes. Returns 0 or -ENOMEM. */
int disp_pool_init(struct disp_pool *p, uint32_t bytes);

void disp_pool_fini(struct disp_pool *p);

/* Copy s[0..len) into a block. len 0 takes no block. Returns 0, -EMSGSIZE (longer
 * than DISP_TEXT_MAX_BYTES) or -ENOMEM (no block free). */
int disp_pool_put(struct disp_pool *p, const char *s, uint32_t len, struct disp_text *out);

/* Give the block back (no-op for an empty text) and clear *t. */
void disp_pool_free(struct disp_pool *p, struct disp_text *t);

static inline const char *disp_pool_ptr(const struct disp_pool *p, struct disp_text t)
{
	return t.len ? p->mem + t.off : NULL;
}

/*
 * Number of Unicode code points in s[0..len), or -1 when it is not valid UTF-8
 * (overlong forms, surrogates, code points above U+10FFFF, stray or missing
 * continuation bytes).
 */
int64_t disp_utf8_count(const char *s, size_t len);

#endif /* SURGE_DISPATCH_PVT_H */
