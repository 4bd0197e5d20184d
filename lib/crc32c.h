/* SPDX-License-Identifier: MIT */
/*
 * lib/crc32c.h: CRC-32C (Castagnoli), the checksum of every journal record.
 * Uses the SSE4.2 crc32 instruction when the CPU has it, else a table.
 */
#ifndef AQ_CRC32C_H
#define AQ_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at buf. */
uint32_t aq_crc32c(uint32_t crc, const void *buf, size_t len);
/* The same by table only, whatever the CPU (tests compare the two). */
uint32_t aq_crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
