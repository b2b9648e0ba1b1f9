/* SPDX-License-Identifier: MIT */
/*
 * The text pool: questions, bot transcripts and held messages, in blocks of
 * 64, 256, 1 Ki, 4 Ki and 16 Ki bytes. Each class gets an equal share of the
 * bytes, so short messages (by far the most) get many blocks and a few long
 * transcripts still fit. A freed block keeps the offset of the next free one
 * in its first four bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_pvt.h"

#define POOL_NONE UINT32_MAX

static const uint32_t class_size[DISP_POOL_CLASSES] = {64, 256, 1024, 4096, DISP_TEXT_MAX_BYTES};

int disp_pool_init(struct disp_pool *p, uint32_t bytes)
{
	uint32_t share = bytes / DISP_POOL_CLASSES;
	uint32_t base = 0;

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < DISP_POOL_CLASSES; i++) {
		struct disp_pool_class *c = &p->cls[i];

		c->size = class_size[i];
		c->count = share / c->size;
		c->base = base;
		c->free_head = POOL_NONE;
		base += c->count * c->size;
		p->total_blocks += c->count;
	}
	/* Untouched pages of a large allocation cost nothing until a block is used. */
	p->mem = malloc(base ? base : 1);
	if (!p->mem)
		return -ENOMEM;
	return 0;
}

void disp_pool_fini(struct disp_pool *p)
{
	free(p->mem);
	p->mem = NULL;
}

static uint32_t class_take(struct disp_pool *p, struct disp_pool_class *c)
{
	uint32_t off;

	if (c->free_head != POOL_NONE) {
		off = c->free_head;
		memcpy(&c->free_head, p->mem + off, sizeof(uint32_t));
	} else if (c->bump < c->count) {
		off = c->base + c->bump * c->size;
		c->bump++;
	} else {
		return POOL_NONE;
	}
	c->used++;
	p->used_blocks++;
	return off;
}

int disp_pool_put(struct disp_pool *p, const char *s, uint32_t len, struct disp_text *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return 0;
	if (len > DISP_TEXT_MAX_BYTES)
		return -EMSGSIZE;
	for (int i = 0; i < DISP_POOL_CLASSES; i++) {
		struct disp_pool_class *c = &p->cls[i];
		uint32_t off;

		if (c->size < len)
			continue;
		off = class_take(p, c);
		if (off == POOL_NONE)
			continue;
		memcpy(p->mem + off, s, len);
		out->off = off;
		out->len = (uint16_t)len;
		out->cls = (uint8_t)i;
		return 0;
	}
	return -ENOMEM;
}

void disp_pool_free(struct disp_pool *p, struct disp_text *t)
{
	struct disp_pool_class *c;

	if (t->len == 0)
		return;
	c = &p->cls[t->cls];
	memcpy(p->mem + t->off, &c->free_head, sizeof(uint32_t));
	c->free_head = t->off;
	c->used--;
	p->used_blocks--;
	memset(t, 0, sizeof(*t));
}
