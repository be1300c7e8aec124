DROP INDEX runs_unseen;
