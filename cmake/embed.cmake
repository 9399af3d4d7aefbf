# Turns the file IN into a C source OUT defining imp_openapi_doc[] and imp_openapi_len.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "#include <stddef.h>\nconst unsigned char imp_openapi_doc[] = {${bytes}0x00};\nconst size_t imp_openapi_len = ${len};\n")
