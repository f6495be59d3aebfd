-- Configs: a CRM table and a HubSpot-style mirror, and what a bad config gets.
CREATE SCHEMA cfg;
CREATE TABLE cfg.crm (id serial PRIMARY KEY, full_name text, email text, phone text);
CREATE SEQUENCE cfg_hub_seq START 1000;
CREATE TABLE cfg.hub (id text PRIMARY KEY DEFAULT 'hs-' || nextval('cfg_hub_seq'), firstname text,
                      lastname text, email text, phone text);
SELECT sync_register_table('cfg_crm', 'contacts', 'cfg.crm') > 0 AS registered,
       sync_register_table('cfg_hub', 'contacts', 'cfg.hub') > 0 AS registered;
SELECT try(format($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', NULL, %L)$$, s)) AS strategy
  FROM unnest(ARRAY['nope', 'LATEST_WINS', '']) s;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', sync_direction => 'sideways')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'nope', 'contacts')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', '[{"source": "nope", "target": "email"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', '{"not": "an array"}')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts',
    '[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "shout"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', match_on => ARRAY['email', NULL])$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', sync_interval => '-1 minute')$$) AS error;
-- NULLs, names, endpoints, the mapping's columns and keys, match_on, privileges
SELECT try($$SELECT sync_create_config(NULL, 'cfg_crm', 'cfg_hub', 'contacts')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', NULL, NULL)$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', sync_interval => NULL)$$) AS error;
SELECT try(format($$SELECT sync_create_config(%L, 'cfg_crm', 'cfg_hub', 'contacts')$$, repeat('n', 64))) AS error;
SELECT try($$SELECT sync_create_config('  ', 'cfg_crm', 'cfg_hub', 'contacts')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', target_entity_type => 'people')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_crm', 'contacts')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', '[{"source": "email", "target": "nope"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', '[{"source": "id", "target": "phone"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts',
    '[{"source": "email", "target": "email"}, {"source": "phone", "target": "email"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts',
    '[{"source": "email", "target": "email", "tranform": "lowercase"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts',
    '[{"source": "full_name", "target": "firstname", "transform": "split"}]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts', '[]')$$) AS error;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts',
    '[{"source": "email", "target": "email"}]', match_on => ARRAY['phone'])$$) AS error;
CREATE TABLE cfg.other (id int PRIMARY KEY, code text);
SELECT sync_register_table('cfg_other', 'contacts', 'cfg.other') > 0 AS registered;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_other', 'contacts')$$) AS error;
CREATE ROLE regress_cfg_user;
SET ROLE regress_cfg_user;
SELECT try($$SELECT sync_create_config('c', 'cfg_crm', 'cfg_hub', 'contacts')$$) AS error;
RESET ROLE;
DROP ROLE regress_cfg_user;
SELECT sync_unregister_table('cfg_other', 'contacts');
SELECT count(*) AS configs FROM sync_configs;
-- the README's config
SELECT sync_create_config('crm_to_hub', 'cfg_crm', 'cfg_hub', 'contacts',
  '[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
    {"source": "email", "target": "email", "transform": "lowercase"},
    {"source": "phone", "target": "phone"}]',
  conflict_strategy => 'manual') > 0 AS created;
SELECT try($$SELECT sync_create_config('crm_to_hub', 'cfg_crm', 'cfg_hub', 'contacts')$$) AS error;
SELECT name, source_system, target_system, conflict_strategy, sync_direction, sync_interval, enabled,
       position IS NULL AS never_run, owner
  FROM sync_configs;
-- an endpoint a config uses cannot be unregistered
SELECT try($$SELECT sync_unregister_table('cfg_crm', 'contacts')$$) AS error;
UPDATE sync_configs SET enabled = false;
