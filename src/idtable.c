/* The table of connections by id: open addressing with linear probing,
 * tombstones, and a rehash in place when they pile up. Ids are never 0 or
 * UINT64_MAX (those mark empty and deleted slots). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t id, size_t cap)
{
	/* Ids are sequential: a multiplicative hash spreads them. */
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static int table_grow(ssock__table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	if (t->count * 4 < t->cap)
		cap = t->cap; /* mostly tombstones: rehash in place */
	struct ssock__slot *slots = calloc(cap, sizeof *slots);
	if (!slots)
		return SSOCK_ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		uint64_t id = t->slots[i].id;
		if (id == 0 || id == UINT64_MAX)
			continue;
		size_t j = slot_of(id, cap);
		while (slots[j].id)
			j = (j + 1) & (cap - 1);
		slots[j] = t->slots[i];
	}
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	t->used = t->count;
	return 0;
}

int ssock__table_put(ssock__table *t, uint64_t id, ssock_conn *conn)
{
	if ((t->used + 1) * 4 > t->cap * 3) {
		int rc = table_grow(t);
		if (rc != 0)
			return rc;
	}
	size_t i = slot_of(id, t->cap);
	while (t->slots[i].id != 0 && t->slots[i].id != UINT64_MAX)
		i = (i + 1) & (t->cap - 1);
	if (t->slots[i].id == 0)
		t->used++;
	t->slots[i].id = id;
	t->slots[i].conn = conn;
	t->count++;
	return 0;
}

static struct ssock__slot *table_find(const ssock__table *t, uint64_t id)
{
	if (t->cap == 0 || id == 0 || id == UINT64_MAX)
		return NULL;
	size_t i = slot_of(id, t->cap);
	while (t->slots[i].id != 0) {
		if (t->slots[i].id == id)
			return &t->slots[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

ssock_conn *ssock__table_get(const ssock__table *t, uint64_t id)
{
	struct ssock__slot *s = table_find(t, id);
	return s ? s->conn : NULL;
}

void ssock__table_del(ssock__table *t, uint64_t id)
{
	struct ssock__slot *s = table_find(t, id);
	if (!s)
		return;
	s->id = UINT64_MAX;
	s->conn = NULL;
	t->count--;
}

void ssock__table_free(ssock__table *t)
{
	free(t->slots);
	memset(t, 0, sizeof *t);
}
