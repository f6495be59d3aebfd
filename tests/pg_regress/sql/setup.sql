-- Runs once, when the regression database is (re)created.
CREATE EXTENSION sync_engine;
-- "SQLSTATE: message" of the error `q` raises, or 'ok'; the golden files show both
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- regress_base: the same setup, for the tests that start from fresh ids in a database of
-- their own (CREATE DATABASE regress_NAME TEMPLATE regress_base), whatever ran before
\c postgres
CREATE DATABASE regress_base TEMPLATE sync_engine_regress;
\c sync_engine_regress
