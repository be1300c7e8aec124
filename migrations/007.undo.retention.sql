DROP INDEX control_requests_done;
DROP INDEX step_fanouts_by_run;
DROP INDEX documents_by_run;
DROP INDEX runs_finished;
