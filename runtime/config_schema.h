/* runtime/config_schema.h: the table behind runtime/config.h (internal to
 * runtime/; other modules read sl_config fields directly). */
#ifndef SL_RUNTIME_CONFIG_SCHEMA_H
#define SL_RUNTIME_CONFIG_SCHEMA_H

#include <stddef.h>

#include "runtime/config.h"

typedef enum { CFG_INT, CFG_I64, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_ENUM, CFG_STRLIST } cfg_type;

typedef struct {
    const char *path;    /* "section.key" */
    cfg_type type;
    size_t offset;       /* into sl_config */
    size_t size;         /* of the field */
    const char *def;     /* default, in --set syntax */
    double min, max;     /* numbers: inclusive range */
    const char *choices; /* enums: "a|b|c", stored as the index */
    const char *doc;
} cfg_field;

extern const cfg_field cfg_schema[];
extern const size_t cfg_schema_count;

#endif
