/* Entity kinds described as data: the fields each one has, their types and limits, which
 * ones the server sets, and which are kept in indexed store columns. The generic create,
 * read, update, delete and list code (src/api/resource.c) and the store
 * (src/store/sqlite/) both work from these descriptions, so a field's rule lives in one place. */
#ifndef IMP_KIND_H
#define IMP_KIND_H
#include <stddef.h>

typedef enum {
	IMP_T_STRING,   /* UTF-8 string of at most max code points */
	IMP_T_ENUM,     /* one of choices */
	IMP_T_REF,      /* UUID of an entity of kind ref in the same account */
	IMP_T_BOOL,
	IMP_T_DATETIME, /* ISO-8601 string */
	IMP_T_SCOPES,   /* array of distinct strings from choices */
	IMP_T_ANY       /* any JSON value; the kind's hook validates it */
} imp_type;

enum {
	IMP_F_REQUIRED = 1 << 0,    /* must be given on create */
	IMP_F_CREATE_ONLY = 1 << 1, /* set on create; a different value on update is 422 */
	IMP_F_SERVER = 1 << 2,      /* set only by the server; in a body it is 400 */
	IMP_F_NULLABLE = 1 << 3,    /* null is a value */
	IMP_F_FILTER = 1 << 4,      /* ?field= filters lists */
	IMP_F_SORT = 1 << 5,        /* sortBy=field orders lists */
	IMP_F_WRITE_ONLY = 1 << 6   /* accepted in bodies, never stored in doc nor shown */
};

typedef struct imp_field {
	const char *name;            /* JSON name */
	imp_type type;
	unsigned flags;
	unsigned max;                /* strings: most code points */
	const char *const *choices;  /* enums and scopes, NULL-terminated */
	const char *def;             /* default on create when absent (enums) */
	const char *ref;             /* IMP_T_REF: kind name */
	const char *column;          /* store column, or NULL to keep it in the document */
} imp_field;

typedef struct imp_kind {
	const char *name;            /* singular wrapper: "deviceTemplate" */
	const char *plural;          /* list wrapper: "deviceTemplates" */
	const char *table;           /* store table */
	const imp_field *fields;     /* ends with a zeroed entry */
	const char *q_columns[2];    /* columns that ?q= matches by prefix, or NULL */
	/* Filters from most to least selective ("q" stands for ?q=). The store searches by
	 * the index of the first one a list uses and checks the rest row by row, instead of
	 * leaving SQLite to guess without statistics. NULL: let SQLite choose. */
	const char *const *index_order;
} imp_kind;

extern const imp_kind imp_kind_device_template;
extern const imp_kind imp_kind_device_field;
extern const imp_kind imp_kind_channel_template;
extern const imp_kind imp_kind_organization_template;
extern const imp_kind imp_kind_organization;
extern const imp_kind imp_kind_account_user;
extern const imp_kind imp_kind_api_key;
extern const imp_kind imp_kind_device;
extern const imp_kind imp_kind_certificate_authority;
extern const imp_kind imp_kind_claim_token;
extern const imp_kind imp_kind_end_user_template;
extern const imp_kind imp_kind_end_user;

/* The kind named name ("deviceTemplate"), or NULL. */
const imp_kind *imp_kind_by_name(const char *name);

/* The field named name of kind k, or NULL. */
const imp_field *imp_kind_field(const imp_kind *k, const char *name);

/* Index of s in the NULL-terminated choices, or -1. */
int imp_choice_index(const char *const *choices, const char *s);

/* API key scopes as bits. */
enum { IMP_SCOPE_ADMIN = 1, IMP_SCOPE_PROVISIONING = 2, IMP_SCOPE_READ = 4, IMP_SCOPE_BROKER = 8 };
extern const char *const imp_scope_names[];

#endif
