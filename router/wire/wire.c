/* SPDX-License-Identifier: MIT */
/*
 * wire: arena allocator, Packet/Frame decoding and plaintext encoding.
 * Sequencing lives in wire_seq.c.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "wire.h"

#define WIRE_ARENA_ALIGN 16u

/* protobuf wire types and the tags this file writes by hand */
#define PB_WT_VARINT             0u
#define PB_WT_FIXED64            1u
#define PB_WT_LEN                2u
#define PB_WT_FIXED32            5u
#define PB_TAG_PACKET_GATEWAY_ID ((1u << 3) | PB_WT_VARINT)
#define PB_TAG_PACKET_FRAME      ((2u << 3) | PB_WT_LEN)
#define PB_FIELD_FRAME_MSGS      4u
#define PB_MAX_FIELD             ((1u << 29) - 1)

/* ---- arena ---------------------------------------------------------------- */

static void *arena_pbc_alloc(void *data, size_t size)
{
	return wire_arena_alloc(data, size);
}

/* Everything goes at once on reset: per-object frees have nothing to do. */
static void arena_pbc_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

void wire_arena_init(struct wire_arena *arena, void *mem, size_t cap)
{
	arena->base = mem;
	arena->cap = mem ? cap : 0;
	arena->used = 0;
	arena->high_water = 0;
	arena->failures = 0;
	/* protobuf-c gets a pointer to the arena itself: it must not move after init */
	arena->pbc.alloc = arena_pbc_alloc;
	arena->pbc.free = arena_pbc_free;
	arena->pbc.allocator_data = arena;
}

void wire_arena_reset(struct wire_arena *arena)
{
	arena->used = 0;
}

void *wire_arena_alloc(struct wire_arena *arena, size_t n)
{
	uintptr_t base = (uintptr_t)arena->base;
	size_t pad, start;

	/* a zero-byte request still gets a distinct, valid pointer */
	if (n == 0)
		n = 1;
	/* align the address, not the offset: the caller's memory may be unaligned */
	pad = (size_t)(-(base + arena->used) & (WIRE_ARENA_ALIGN - 1));
	if (arena->used > arena->cap || pad > arena->cap - arena->used ||
	    n > arena->cap - arena->used - pad) {
		arena->failures++;
		return NULL;
	}
	start = arena->used + pad;
	arena->used = start + n;
	if (arena->used > arena->high_water)
		arena->high_water = arena->used;
	return arena->base + start;
}

char *wire_arena_strndup(struct wire_arena *arena, const char *s, size_t len)
{
	char *p;

	if (len == SIZE_MAX) {
		arena->failures++;
		return NULL;
	}
	p = wire_arena_alloc(arena, len + 1);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* ---- drop reasons --------------------------------------------------------- */

static const char *const drop_reason_names[WIRE_DROP_MAX] = {
        [WIRE_DROP_NONE] = "none",
        [WIRE_DROP_PACKET_UNDECODABLE] = "packet_undecodable",
        [WIRE_DROP_UNKNOWN_GATEWAY] = "unknown_gateway",
        [WIRE_DROP_ADDRESS_REFUSED] = "address_refused",
        [WIRE_DROP_NOT_PLAINTEXT] = "not_plaintext",
        [WIRE_DROP_SEALED_UNSUPPORTED] = "sealed_unsupported",
        [WIRE_DROP_NO_FRAME] = "no_frame",
        [WIRE_DROP_FRAME_UNDECODABLE] = "frame_undecodable",
        [WIRE_DROP_TOO_MANY_ENVELOPES] = "too_many_envelopes",
        [WIRE_DROP_OLD_EPOCH] = "old_epoch",
        [WIRE_DROP_STALE] = "stale",
        [WIRE_DROP_TOO_FAR] = "too_far",
        [WIRE_DROP_DUPLICATE] = "duplicate",
        [WIRE_DROP_ARENA_FULL] = "arena_full",
};

const char *wire_drop_reason_name(enum wire_drop_reason reason)
{
	if ((unsigned)reason >= WIRE_DROP_MAX || !drop_reason_names[reason])
		return "unknown";
	return drop_reason_names[reason];
}

/* ---- decoding ------------------------------------------------------------- */

/* Read a varint; returns the bytes it took, 0 if malformed or truncated. */
static size_t pb_read_varint(const uint8_t *p, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	for (i = 0; i < len && i < 10; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/*
 * Count the envelopes of a serialized Frame by walking its top-level fields
 * only, so that a frame with too many of them is refused before protobuf-c
 * spends arena on every one. Stops early (with what it counted) at anything
 * malformed: the real unpack judges that.
 */
static size_t frame_count_envelopes(const uint8_t *p, size_t len, size_t limit)
{
	size_t n = 0, off = 0;

	while (off < len && n <= limit) {
		uint64_t key, flen;
		size_t k = pb_read_varint(p + off, len - off, &key);

		if (!k)
			break;
		off += k;
		switch (key & 7) {
		case PB_WT_VARINT:
			k = pb_read_varint(p + off, len - off, &flen);
			if (!k)
				return n;
			off += k;
			break;
		case PB_WT_FIXED64:
			if (len - off < 8)
				return n;
			off += 8;
			break;
		case PB_WT_FIXED32:
			if (len - off < 4)
				return n;
			off += 4;
			break;
		case PB_WT_LEN:
			k = pb_read_varint(p + off, len - off, &flen);
			if (!k || flen > len - off - k)
				return n;
			off += k + (size_t)flen;
			if ((key >> 3) == PB_FIELD_FRAME_MSGS)
				n++;
			break;
		default:
			return n;
		}
	}
	return n;
}

/*
 * protobuf-c accepts field number 0 (written as an overlong varint) and
 * numbers above the protobuf maximum among unknown fields, and would write
 * them back out as bytes nobody can parse. Both are invalid protobuf: refuse
 * them anywhere in the tree. The schema bounds the depth; unknown fields are
 * never descended into.
 */
static bool msg_tags_valid(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	unsigned i;

	for (i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0 || m->unknown_fields[i].tag > PB_MAX_FIELD)
			return false;
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *member = (const char *)m + f->offset;
		const char *quant = (const char *)m + f->quantifier_offset;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *)member;
			size_t k, n = *(const size_t *)quant;

			for (k = 0; k < n; k++)
				if (!msg_tags_valid(sub[k]))
					return false;
		} else {
			const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;

			if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    *(const uint32_t *)quant != f->id)
				continue;
			if (sub && !msg_tags_valid(sub))
				return false;
		}
	}
	return true;
}

int wire_decode(struct wire_arena *arena, const uint8_t *buf, size_t len,
                Surge__V1__Packet **packet, Surge__V1__Frame **frame, enum wire_drop_reason *reason)
{
	uint64_t failures = arena->failures;
	Surge__V1__Packet *pkt;
	Surge__V1__Frame *frm;

	*packet = NULL;
	*frame = NULL;
	*reason = WIRE_DROP_NONE;

	if (!buf && len) {
		*reason = WIRE_DROP_PACKET_UNDECODABLE;
		return -EBADMSG;
	}
	pkt = surge__v1__packet__unpack(&arena->pbc, len, buf);
	if (!pkt) {
		*reason = arena->failures != failures ? WIRE_DROP_ARENA_FULL
		                                      : WIRE_DROP_PACKET_UNDECODABLE;
		return -EBADMSG;
	}
	if (!msg_tags_valid(&pkt->base)) {
		*reason = WIRE_DROP_PACKET_UNDECODABLE;
		return -EBADMSG;
	}
	if (pkt->frame.len == 0) {
		*reason = pkt->sealed.len ? WIRE_DROP_SEALED_UNSUPPORTED : WIRE_DROP_NO_FRAME;
		return -EBADMSG;
	}
	if (frame_count_envelopes(pkt->frame.data, pkt->frame.len, WIRE_MAX_ENVELOPES) >
	    WIRE_MAX_ENVELOPES) {
		*reason = WIRE_DROP_TOO_MANY_ENVELOPES;
		return -EBADMSG;
	}
	frm = surge__v1__frame__unpack(&arena->pbc, pkt->frame.len, pkt->frame.data);
	if (!frm) {
		*reason = arena->failures != failures ? WIRE_DROP_ARENA_FULL
		                                      : WIRE_DROP_FRAME_UNDECODABLE;
		return -EBADMSG;
	}
	if (!msg_tags_valid(&frm->base)) {
		*reason = WIRE_DROP_FRAME_UNDECODABLE;
		return -EBADMSG;
	}
	/* the pre-scan stops at malformed input; this is the authoritative count */
	if (frm->n_msgs > WIRE_MAX_ENVELOPES) {
		*reason = WIRE_DROP_TOO_MANY_ENVELOPES;
		return -EBADMSG;
	}
	*packet = pkt;
	*frame = frm;
	return 0;
}

/* ---- encoding ------------------------------------------------------------- */

static size_t pb_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t pb_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

size_t wire_packet_overhead(uint32_t gateway_id, size_t frame_len)
{
	size_t n = 0;

	/* proto3: zero-valued fields are not on the wire at all */
	if (gateway_id)
		n += 1 + pb_varint_len(gateway_id);
	if (frame_len)
		n += 1 + pb_varint_len(frame_len);
	return n;
}

int wire_encode_plain(uint32_t gateway_id, const Surge__V1__Frame *frame, uint8_t *out, size_t cap)
{
	size_t frame_len, hdr, off = 0;

	if (!frame || (!out && cap))
		return -EINVAL;
	frame_len = surge__v1__frame__get_packed_size(frame);
	hdr = wire_packet_overhead(gateway_id, frame_len);
	if (frame_len > cap || hdr > cap - frame_len || hdr + frame_len > INT_MAX)
		return -EMSGSIZE;

	/* the header length is known from frame_len, so the Frame is packed in place, once */
	if (gateway_id) {
		/* hdr > 0 here, so cap > 0 and out is not NULL */
		// NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
		out[off++] = PB_TAG_PACKET_GATEWAY_ID;
		off += pb_put_varint(out + off, gateway_id);
	}
	if (frame_len) {
		out[off++] = PB_TAG_PACKET_FRAME;
		off += pb_put_varint(out + off, frame_len);
		if (surge__v1__frame__pack(frame, out + off) != frame_len)
			return -EINVAL;
	}
	return (int)(off + frame_len);
}
