#include "unit_util.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void unit_remove_tree(const char *path)
{
	DIR *d = opendir(path);
	if(!d) {
		unlink(path);
		return;
	}
	struct dirent *de;
	char p[512];
	while((de = readdir(d))) {
		if(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
		snprintf(p, sizeof p, "%s/%s", path, de->d_name);
		unit_remove_tree(p);
	}
	closedir(d);
	rmdir(path);
}
