-- The extension installs its schema, tables, functions and settings, and drops cleanly.
-- pg_regress created it already (--load-extension=sae); drop and create it again so this
-- test sees a fresh install and checks that every object belongs to the extension.
DROP EXTENSION sae;
SELECT count(*) AS sae_schemas_left FROM pg_namespace WHERE nspname = 'sae';
SELECT count(*) AS sae_functions_left FROM pg_proc WHERE proname LIKE 'sae\_%';
CREATE EXTENSION sae;

SELECT extversion, extrelocatable, extnamespace::regnamespace AS namespace
FROM pg_extension WHERE extname = 'sae';

-- the four tables, in schema sae
SELECT table_name, table_type
FROM information_schema.tables WHERE table_schema = 'sae' ORDER BY table_name;

-- their columns: name, type, nullability, in order
SELECT table_name, ordinal_position AS pos, column_name,
       CASE WHEN data_type = 'ARRAY' THEN udt_name ELSE data_type END AS type,
       is_nullable AS nullable
FROM information_schema.columns WHERE table_schema = 'sae'
ORDER BY table_name, ordinal_position;

-- primary keys and foreign keys (ON DELETE CASCADE to sae.runs)
SELECT conrelid::regclass AS tbl, contype, pg_get_constraintdef(oid) AS def
FROM pg_constraint WHERE connamespace = 'sae'::regnamespace
ORDER BY conrelid::regclass::text, contype, conname;

-- weights are stored uncompressed out of line
SELECT attrelid::regclass AS tbl, attname, attstorage
FROM pg_attribute
WHERE attrelid IN ('sae.features'::regclass, 'sae.tensors'::regclass) AND attnum > 0
  AND atttypid = 'real[]'::regtype
ORDER BY attrelid::regclass::text, attname;

-- pg_dump keeps the user's runs: every table and the run_id sequence are config tables
SELECT c::regclass AS config_table
FROM pg_extension, unnest(extconfig) AS c WHERE extname = 'sae' ORDER BY c::regclass::text;

-- the functions: arguments, results, volatility, strictness, parallel safety
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS result,
       p.provolatile AS vol, p.proisstrict AS strict, p.proparallel AS par
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'sae'
ORDER BY p.proname;

-- argument defaults of the synthetic generators
SELECT proname, pg_get_function_arguments(oid) AS arguments
FROM pg_proc WHERE proname LIKE 'sae\_synthetic\_%' ORDER BY proname;

-- every extension object is commented
SELECT d.classid::regclass AS catalog, count(*) AS objects,
       count(*) FILTER (WHERE obj_description(d.objid, d.classid::regclass::name) IS NOT NULL) AS commented
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'sae'
WHERE d.deptype = 'e' AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_namespace'::regclass)
  AND NOT (d.classid = 'pg_class'::regclass
           AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
GROUP BY 1 ORDER BY d.classid::regclass::text;

-- the settings appear once the library is loaded
LOAD 'sae';
SELECT name, setting, unit, context, vartype, min_val, max_val
FROM pg_settings WHERE name LIKE 'sae.%' ORDER BY name;
SET sae.max_memory = '2GB';
SHOW sae.max_memory;
RESET sae.max_memory;
SET sae.max_memory = '512kB';
SET sae.progress_every = -1;
SET sae.threads = 2000;
-- the sae prefix is reserved: a misspelt setting is refused
SET sae.max_memroy = '1GB';

-- the tables start empty
SELECT (SELECT count(*) FROM sae.runs) AS runs, (SELECT count(*) FROM sae.train_log) AS train_log,
       (SELECT count(*) FROM sae.features) AS features, (SELECT count(*) FROM sae.tensors) AS tensors;

-- the synthetic dictionary: unit directions, deterministic per seed
SELECT count(*) AS n, min(array_length(direction, 1)) AS min_len, max(array_length(direction, 1)) AS max_len,
       bool_and(abs(sqrt((SELECT sum(x * x) FROM unnest(direction) x)) - 1) < 1e-5) AS unit_norm
FROM sae_synthetic_dictionary(16, 32, 3);
SELECT (SELECT array_agg(direction ORDER BY feature_id) FROM sae_synthetic_dictionary(8, 4, 1))
     = (SELECT array_agg(direction ORDER BY feature_id) FROM sae_synthetic_dictionary(8, 4, 1)) AS same_seed_same,
       (SELECT array_agg(direction ORDER BY feature_id) FROM sae_synthetic_dictionary(8, 4, 1))
     = (SELECT array_agg(direction ORDER BY feature_id) FROM sae_synthetic_dictionary(8, 4, 2)) AS other_seed_same;
SELECT min(feature_id), max(feature_id) FROM sae_synthetic_dictionary(4, 5);

-- synthetic activations: row ids 1..n, width d_in, deterministic, finite
SELECT count(*) AS n, min(row_id), max(row_id), min(array_length(activation, 1)) AS min_len,
       max(array_length(activation, 1)) AS max_len,
       bool_and(NOT EXISTS (SELECT 1 FROM unnest(activation) x WHERE x = 'NaN' OR x IN ('Infinity', '-Infinity'))) AS finite
FROM sae_synthetic_activations(500, 16, 32, 2, 3);
SELECT (SELECT array_agg(activation ORDER BY row_id) FROM sae_synthetic_activations(20, 8, 16))
     = (SELECT array_agg(activation ORDER BY row_id) FROM sae_synthetic_activations(20, 8, 16, 3, 0)) AS defaults_are_3_and_0;
SELECT count(*) FROM sae_synthetic_activations(0, 8, 16);
-- the generators' argument checks
SELECT * FROM sae_synthetic_activations(-1, 8, 16);
SELECT * FROM sae_synthetic_activations(10, 0, 16);
SELECT * FROM sae_synthetic_activations(10, 8, 0);
SELECT * FROM sae_synthetic_activations(10, 8, 16, 0);
SELECT * FROM sae_synthetic_activations(10, 8, 16, 17);
SELECT * FROM sae_synthetic_dictionary(70000, 2);
