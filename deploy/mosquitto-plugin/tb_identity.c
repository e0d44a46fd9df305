/*
 * ThingsBoard device identity for Mosquitto 2.0 (plugin API v5).
 *
 * A ThingsBoard device publishes to v1/devices/me/<rest> and is known by its MQTT user name (its
 * access token). A subscriber never sees the publisher's user name, so this plugin puts it in the
 * topic: a publish to v1/devices/me/<rest> is delivered as v1/devices/<user name>/<rest>, which is
 * what Mekong IOC's ingest subscribes to (v1/devices/+/telemetry, v1/devices/+/attributes).
 *
 * The rule, for every client (there is no privileged one):
 *   - v1/devices/me/<rest>: rewritten to v1/devices/<user name>/<rest>; refused when the client
 *     has no user name, or one that is empty or holds '/', '+' or '#' (it would not be one level).
 *   - any other topic under v1/devices/ (v1/devices/<x>/..., x != "me"; v1/devices/me alone):
 *     refused. Only the broker may name a device there, so no client can speak for another.
 *   - every other topic: untouched.
 * A refused PUBLISH is not delivered: it is refused at the ACL step (MQTT 5: PUBACK/PUBREC 0x87
 * "Not authorized"; MQTT 3.1.1 has no code, the message is dropped), where a will is checked too
 * when the broker sends it; the message step checks again before it rewrites (another plugin's ACL
 * may have allowed the publish first). Mosquitto 2.0 never passes a will to the message step: a
 * will to v1/devices/me/... arrives unrewritten (ingest dead-letters it, unknown_device).
 *
 * Its ACL check answers only to refuse; everything else it defers to the broker's other access
 * control (the dynamic security plugin, an acl_file), which must exist: Mosquitto 2.0 denies what
 * every ACL check deferred, so with this plugin alone every publish and subscription is denied.
 *
 * Build: make (needs mosquitto-dev and libmosquitto-dev). Use: "plugin /path/to/mosquitto_tb_identity.so" in
 * mosquitto.conf. See README.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define PREFIX "v1/devices/"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define ME "me/"
#define ME_LEN (sizeof(ME) - 1)
#define TOPIC_MAX 65535U /* an MQTT string's longest length */

static mosquitto_plugin_id_t *plugin_id = NULL;

/* A user name that can stand as one topic level: present, not empty, no '/', '+' or '#'. */
static bool one_level(const char *name)
{
	return name != NULL && name[0] != '\0' && strpbrk(name, "/+#") == NULL;
}

/* Whether a client may publish to topic: NULL when it may, else why not. */
static const char *refusal(const char *topic, const char *username)
{
	if(strncmp(topic, PREFIX, PREFIX_LEN) != 0){
		return NULL;
	}
	if(strncmp(topic + PREFIX_LEN, ME, ME_LEN) != 0){
		return "only v1/devices/me/... may be published; the broker puts the user name in the topic";
	}
	if(!one_level(username)){
		return "a ThingsBoard device needs a user name (its access token) without '/', '+' or '#'";
	}
	if(strlen(topic) - ME_LEN + 1 + strlen(username) > TOPIC_MAX){
		return "the topic with the user name in it would be longer than MQTT allows";
	}
	return NULL;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *why;

	(void)event;
	(void)userdata;
	if(ed->access != MOSQ_ACL_WRITE){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	why = refusal(ed->topic, mosquitto_client_username(ed->client));
	if(why != NULL){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "tb_identity: denied PUBLISH from %s to '%s': %s",
				mosquitto_client_id(ed->client), ed->topic, why);
		return MOSQ_ERR_ACL_DENIED;
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	const char *rest;
	char *topic;
	size_t len;

	(void)event;
	(void)userdata;
	if(strncmp(ed->topic, PREFIX, PREFIX_LEN) != 0){
		return MOSQ_ERR_SUCCESS;
	}
	if(refusal(ed->topic, username) != NULL){ /* the ACL step refused it already */
		return MOSQ_ERR_ACL_DENIED;
	}
	rest = ed->topic + PREFIX_LEN + ME_LEN;
	len = PREFIX_LEN + strlen(username) + 1 + strlen(rest) + 1;
	topic = mosquitto_malloc(len);
	if(topic == NULL){
		return MOSQ_ERR_NOMEM;
	}
	snprintf(topic, len, "%s%s/%s", PREFIX, username, rest);
	mosquitto_free(ed->topic); /* the broker takes ed->topic as the message's and frees it later */
	ed->topic = topic;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data,
		struct mosquitto_opt *opts, int opt_count)
{
	int rc;

	(void)user_data;
	(void)opts;
	(void)opt_count;
	plugin_id = identifier;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		return rc;
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
}
