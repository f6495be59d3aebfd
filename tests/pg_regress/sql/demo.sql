-- The demo's story: demo/demo.sql, what scripts/demo.sh runs, in a database of its own
-- (it installs the extension itself). Its whole output is the expected one.
CREATE DATABASE regress_demo;
\c regress_demo
-- scripts/regress.sh copies demo/demo.sql next to sql/ and expected/
\getenv abs_srcdir PG_ABS_SRCDIR
\set demo_file :abs_srcdir '/demo.sql'
\i :demo_file
