/* The schema as an ordered list of migrations; see migrations.c. */
#ifndef IMP_MIGRATIONS_H
#define IMP_MIGRATIONS_H

const char *const *imp_migrations(int *count);

#endif
