/* scheduler_config.h — diffusers scheduler_config.json -> kn_sched_config. */
#ifndef KN_SCHEDULER_CONFIG_H
#define KN_SCHEDULER_CONFIG_H

#include "diffusion/scheduler.h"

/* Parses a diffusers scheduler config (JSON text). Missing keys take the diffusers defaults of
 * the named class; *kind receives the class (or -1 if _class_name is absent). `what` names the
 * source in error messages. */
kn_status kn_sched_config_parse(const char *json, const char *what, kn_sched_config *cfg, int *kind);
/* Reads and parses a file. */
kn_status kn_sched_config_load(const char *path, kn_sched_config *cfg, int *kind);

#endif
