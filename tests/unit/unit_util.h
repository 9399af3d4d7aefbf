/* What several unit tests share. */
#ifndef IMP_TESTS_UNIT_UTIL_H
#define IMP_TESTS_UNIT_UTIL_H

/* Removes path: a file, or a directory with everything below it (a test's temporary
 * directory, whatever the code under test made in it). */
void unit_remove_tree(const char *path);

#endif
