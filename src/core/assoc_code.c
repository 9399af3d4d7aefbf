#include "core/assoc_code.h"

#include <string.h>

#include "core/crypto.h"

const char imp_assoc_alphabet[33] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void imp_assoc_code_format(uint64_t bits, char out[IMP_ASSOC_SHOWN + 1])
{
	size_t n = 0;
	for(int i = 0; i < IMP_ASSOC_SYMBOLS; i++) {
		if(i && i % 4 == 0) out[n++] = '-';
		out[n++] = imp_assoc_alphabet[(bits >> (5 * (IMP_ASSOC_SYMBOLS - 1 - i))) & 31];
	}
	out[n] = '\0';
}

imp_err imp_assoc_code_new(char out[IMP_ASSOC_SHOWN + 1])
{
	uint8_t raw[8];
	if(imp_random(raw, sizeof raw)) return IMP_ERR_CRYPTO;
	uint64_t bits = 0;
	for(size_t i = 0; i < sizeof raw; i++) bits = bits << 8 | raw[i];
	imp_assoc_code_format(bits & ((UINT64_C(1) << 60) - 1), out);
	return IMP_OK;
}

/* The canonical symbol for c, or 0 when c is none. */
static char symbol(char c)
{
	if(c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
	if(c == 'I' || c == 'L') return '1';
	if(c == 'O') return '0';
	if(c == 'U' || c == '\0') return 0;
	return strchr(imp_assoc_alphabet, c) ? c : 0;
}

imp_err imp_assoc_code_parse(const char *text, char canon[IMP_ASSOC_SYMBOLS + 1])
{
	size_t n = 0;
	canon[0] = '\0';
	if(!text || strnlen(text, IMP_ASSOC_INPUT_MAX + 1) > IMP_ASSOC_INPUT_MAX) return IMP_ERR_BAD_REQUEST;
	for(const char *p = text; *p; p++) {
		if(*p == '-' || *p == ' ') continue;
		char s = symbol(*p);
		if(!s || n == IMP_ASSOC_SYMBOLS) {
			canon[0] = '\0';
			return IMP_ERR_BAD_REQUEST;
		}
		canon[n++] = s;
	}
	canon[n] = '\0';
	if(n != IMP_ASSOC_SYMBOLS) {
		canon[0] = '\0';
		return IMP_ERR_BAD_REQUEST;
	}
	return IMP_OK;
}
