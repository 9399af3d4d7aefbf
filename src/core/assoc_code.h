/* Association codes: 12 symbols of Crockford's base32 (60 random bits), shown in three
 * hyphenated groups of four ("7KQ2-M9XD-4RTA") for people to read off a label or a screen
 * and type into an app. Reading is forgiving: any case, hyphens and spaces anywhere, and
 * the letters people confuse with digits (I and L for 1, O for 0) count as those digits. */
#ifndef IMP_ASSOC_CODE_H
#define IMP_ASSOC_CODE_H
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define IMP_ASSOC_SYMBOLS 12                       /* symbols of a code */
#define IMP_ASSOC_SHOWN (IMP_ASSOC_SYMBOLS + 2)    /* characters of its hyphenated form */
#define IMP_ASSOC_INPUT_MAX 64                     /* longest text parse looks at */

/* Crockford's alphabet: digits and letters but I, L, O and U. */
extern const char imp_assoc_alphabet[33];

/* The code of the 60 low bits of bits, hyphenated, into out[IMP_ASSOC_SHOWN + 1]. */
void imp_assoc_code_format(uint64_t bits, char out[IMP_ASSOC_SHOWN + 1]);

/* A new random code, hyphenated, into out. IMP_ERR_CRYPTO when no randomness. */
imp_err imp_assoc_code_new(char out[IMP_ASSOC_SHOWN + 1]);

/* Reads text as a code: its canonical form (12 upper-case symbols, no hyphens) into
 * canon[IMP_ASSOC_SYMBOLS + 1]. IMP_ERR_BAD_REQUEST when text is not a code (wrong
 * length, a symbol outside the alphabet, longer than IMP_ASSOC_INPUT_MAX). */
imp_err imp_assoc_code_parse(const char *text, char canon[IMP_ASSOC_SYMBOLS + 1]);

#endif
