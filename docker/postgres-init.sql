-- The backend's store of record lives beside Label Studio's database on the same PostgreSQL server.
CREATE DATABASE clinlinker;
