/* cmd_validate.c: `pipectl validate`: parse and check the manifest, contact no server. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>

#include "cli.h"

static void help(void)
{
    printf("Usage: pipectl [-f FILE] validate [-o json]\n\n"
           "Checks the manifest without contacting any server: YAML syntax, known keys, types,\n"
           "ranges, duplicate names, references between topics, tables and workers, ${VAR}\n"
           "expansion, identifier safety and cron expressions.\n\n"
           "Prints one line per problem as FILE:LINE:COL: message on stderr.\n"
           "With -o json, prints {\"valid\": bool, \"errors\": [{file, line, column, message}]}.\n\n"
           "Exit: 0 valid, 1 invalid.\n");
}

int cmd_validate(int argc, char **argv)
{
    int parsed = cli_parse_plain(argc, argv, "validate", help);
    if (parsed >= 0)
        return parsed;
    pc_manifest *m = cli_load_manifest_validate();
    if (m == NULL)
        return EXIT_ERR;
    if (g_cli.json)
        printf("{\n  \"valid\": true,\n  \"errors\": []\n}\n");
    else
        fprintf(stderr, "%s: valid (%zu topics, %zu schemas, %zu sources, %zu sinks)\n", g_cli.file,
                m->ntopics, m->nschemas, m->nsources, m->nsinks);
    pc_manifest_free(m);
    return EXIT_OK;
}
