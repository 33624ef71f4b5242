-- A statement that must NOT parse: if Microsoft's parser accepts it, the
-- T-SQL check in .ci/run is not checking anything (see .ci/tsql_parse.py).
-- @@ canary
SELECT TOP (1) [a] FROM [t] WHERE ([a] >> 1) ORDER BY
GO
