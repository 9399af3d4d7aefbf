#include "core/ids.h"

#include <pthread.h>
#include <string.h>

#include "core/crypto.h"
#include "core/timeutil.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms;
static uint16_t last_seq;

imp_err imp_id_new(imp_id *out)
{
	uint8_t b[16];
	if(imp_random(b, sizeof b)) return IMP_ERR_CRYPTO;

	/* 12 bits after the timestamp count within one millisecond, so two ids made in the
	 * same millisecond by this process still sort in creation order. */
	uint64_t ms = imp_now_ms();
	pthread_mutex_lock(&lock);
	if(ms <= last_ms) {
		ms = last_ms;
		if(++last_seq > 0x0fff) {
			ms = ++last_ms;
			last_seq = 0;
		}
	} else {
		last_ms = ms;
		last_seq = (uint16_t)((b[6] << 8 | b[7]) & 0x01ff); /* random start, room to count */
	}
	uint16_t seq = last_seq;
	pthread_mutex_unlock(&lock);

	for(int i = 0; i < 6; i++) b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | ((seq >> 8) & 0x0f));
	b[7] = (uint8_t)(seq & 0xff);
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));

	char hex[33];
	imp_hex(b, 16, hex);
	char *s = out->s;
	memcpy(s, hex, 8);
	s[8] = '-';
	memcpy(s + 9, hex + 8, 4);
	s[13] = '-';
	memcpy(s + 14, hex + 12, 4);
	s[18] = '-';
	memcpy(s + 19, hex + 16, 4);
	s[23] = '-';
	memcpy(s + 24, hex + 20, 12);
	s[36] = '\0';
	return IMP_OK;
}

int imp_id_valid(const char *s)
{
	static const unsigned char HEX[256] = {
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
		['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['A'] = 1, ['B'] = 1,
		['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1};
	if(!s) return 0;
	for(int i = 0; i < IMP_UUID_LEN; i++) {
		if(i == 8 || i == 13 || i == 18 || i == 23) {
			if(s[i] != '-') return 0;
		} else if(!HEX[(unsigned char)s[i]]) {
			return 0; /* also the NUL of a shorter string */
		}
	}
	return s[IMP_UUID_LEN] == '\0';
}

uint32_t imp_id_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for(; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}
