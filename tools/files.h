/*
 * files.h - what send-file (cmd_files.c) and recv-files (cmd_recv_files.c)
 * share: the file transfer protocol's constants and integer encoding. The
 * protocol itself is described at the top of cmd_files.c.
 */
#ifndef SSOCK_FILES_H
#define SSOCK_FILES_H

#include <stdint.h>

#define CHUNK         (256 * 1024) /* data bytes per 'D' message at most */
#define HEADER_MIN    14           /* 'H', version, size, mode */
#define NAME_MAX_LEN  255
#define PROTO_VERSION 1

static inline void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void put_be32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif /* SSOCK_FILES_H */
