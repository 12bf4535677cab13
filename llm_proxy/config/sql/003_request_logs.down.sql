DROP FUNCTION llm_proxy_maintain_logs(integer, integer);
DROP FUNCTION llm_proxy_log_partition(text, date);
DROP TABLE usage_daily;
DROP TABLE error_logs;
DROP TABLE request_logs;
