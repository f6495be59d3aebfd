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
