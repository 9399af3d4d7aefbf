/* Field and input limits, defined once; tests check each one under and one over. */
#ifndef IMP_LIMITS_H
#define IMP_LIMITS_H

#define IMP_BODY_MAX          (1024 * 1024) /* request bodies, firmware aside */
#define IMP_JSON_DEPTH_MAX    32            /* nesting of request bodies */
#define IMP_NAME_MAX          128           /* names of templates, devices, orgs, keys */
#define IMP_SERIAL_MAX        128           /* serialNumber */
#define IMP_TEXT_MAX          4096          /* custom fields of fieldType text, location */
#define IMP_STRING_MAX        256           /* custom fields of fieldType string */
#define IMP_EMAIL_MAX         254
#define IMP_PASSWORD_MIN      8
#define IMP_PASSWORD_MAX      256
#define IMP_CHANNEL_MAX       64            /* channel template names */
#define IMP_FIELD_NAME_MAX    64            /* custom field names */
#define IMP_PAGE_SIZE_DEFAULT 50
#define IMP_PAGE_SIZE_MAX     1000
#define IMP_ORG_DEPTH_MAX     5
#define IMP_ASSOC_TTL_DEFAULT_S 900            /* association codes: default lifetime */
#define IMP_ASSOC_TTL_MAX_S   31536000         /* a year: codes printed on labels */
#define IMP_ASSOC_FAILS_CALLER 10              /* wrong codes a minute, per caller */
#define IMP_ASSOC_FAILS_ACCOUNT 100            /* and per account */
#define IMP_CUSTOM_FIELDS_MAX 100           /* per device template */
#define IMP_SCOPES_MAX        4
#define IMP_UUID_LEN          36
#define IMP_JWT_TTL_S         (20 * 60)
#define IMP_SESSION_TTL_S     (14 * 24 * 3600)
#define IMP_PEM_TEXT_MAX      16384         /* certificates and CSRs in PEM */
#define IMP_SECRET_BYTES      32            /* device and user MQTT secrets */
#define IMP_SECRET_LEN        44            /* their base64, with padding */
#define IMP_CLAIM_USES_MAX    1000000       /* a claim token's maxUses */
#define IMP_CLAIM_SERIALS_MAX 100000        /* a claim token's allow-list */
#define IMP_CLAIM_TTL_MAX_S   (365 * 24 * 3600) /* how far ahead a claim token may expire */
#define IMP_CERT_DAYS         3650          /* certificates imprint signs from CSRs */

#endif
