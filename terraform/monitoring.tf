# Metrics without an agent: `run` and `scale` write CloudWatch Embedded Metric
# Format records to their log (namespace AzpEntrypoint; names and dimensions in
# the README's Metrics section), so CloudWatch extracts the metrics from the log
# group with nothing else installed. This file puts them on a dashboard and
# alarms on the four that need a person.
#
# The scaler's metrics carry the dimensions Pool and Scaler; the dashboard and
# the scaler alarms select them by Pool (SEARCH and Metrics Insights), so every
# profile of the pool is included whatever its Scaler value.

locals {
  metrics_namespace = "AzpEntrypoint"
  alarm_actions     = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]

  # SEARCH expression for one scaler metric of this pool, one line per scaler.
  scaler_search = {
    for m in ["PendingJobs", "OldestPendingAge", "StartingTasks", "IdleAgents", "BusyAgents", "TasksLaunched", "FailedLaunches", "AgentsPruned", "TasksStopped", "ThrottledRequests"] :
    m => "{${local.metrics_namespace},Pool,Scaler} MetricName=\"${m}\" Pool=\"${var.azp_pool}\""
  }

  run_widgets = [
    {
      type   = "metric"
      width  = 12
      height = 6
      properties = {
        title  = "Agent stops by outcome"
        region = var.region
        stat   = "Sum"
        period = 300
        metrics = [
          for o in ["drained", "cancelled", "killed", "deregistration_failed"] :
          [local.metrics_namespace, "StopOutcome", "Pool", var.azp_pool, "Outcome", o]
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Jobs run"
        region  = var.region
        stat    = "Sum"
        period  = 300
        metrics = [[local.metrics_namespace, "JobsRun", "Pool", var.azp_pool]]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Time to online (s)"
        region  = var.region
        period  = 300
        metrics = [[local.metrics_namespace, "TimeToOnline", "Pool", var.azp_pool, { stat = "Average" }], ["...", { stat = "Maximum" }]]
      }
    },
  ]

  scaler_widgets = [
    for w in [
      { title = "Pending jobs and oldest wait (s)", stat = "Maximum", metrics = ["PendingJobs", "OldestPendingAge"] },
      { title = "Agents: starting, idle, busy", stat = "Maximum", metrics = ["StartingTasks", "IdleAgents", "BusyAgents"] },
      { title = "Tasks launched, failed, stopped", stat = "Sum", metrics = ["TasksLaunched", "FailedLaunches", "TasksStopped"] },
      { title = "Ghost agents pruned, throttled requests", stat = "Sum", metrics = ["AgentsPruned", "ThrottledRequests"] },
      ] : {
      type   = "metric"
      width  = 12
      height = 6
      properties = {
        title  = w.title
        region = var.region
        period = 60
        metrics = [
          for i, m in w.metrics :
          [{ id = "e${i}", expression = "SEARCH('${local.scaler_search[m]}', '${w.stat}', 60)", label = m }]
        ]
      }
    }
  ]
}

resource "aws_cloudwatch_dashboard" "agents" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(local.scaler ? local.scaler_widgets : [], local.run_widgets)
  })
}

# An agent stopped without deregistering (the server still held its job at the
# stop deadline): it stays offline in the pool until `prune` removes it.
resource "aws_cloudwatch_metric_alarm" "deregistration_failed" {
  alarm_name          = "${var.name}-deregistration-failed"
  alarm_description   = "An agent of pool ${var.azp_pool} exited without deregistering (StopOutcome=deregistration_failed). Its log line names the agent; it is offline in the pool until `azp-entrypoint prune` (or the scaler) removes it. Several: look for jobs that ignore cancellation, and a stop_timeout too short for them."
  namespace           = local.metrics_namespace
  metric_name         = "StopOutcome"
  dimensions          = { Pool = var.azp_pool, Outcome = "deregistration_failed" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Jobs wait longer than the SLO: max reached, parallel jobs used up, launches
# failing, or no profile matches the jobs' demands.
resource "aws_cloudwatch_metric_alarm" "oldest_pending" {
  count = local.scaler ? 1 : 0

  alarm_name          = "${var.name}-oldest-pending-job"
  alarm_description   = "A job of pool ${var.azp_pool} has waited more than ${var.pending_job_slo_seconds} s for an agent (OldestPendingAge). Check the scaler's log for why it did not launch: max reached (raise profiles[*].max), the organisation's parallel jobs used up, launches failing (see the failed-launches alarm), or no profile whose capabilities match the job's demands."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.pending_job_slo_seconds
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "oldest"
    expression  = "SELECT MAX(OldestPendingAge) FROM SCHEMA(\"${local.metrics_namespace}\", Pool, Scaler) WHERE Pool = '${var.azp_pool}'"
    period      = 60
    return_data = true
  }
}

# Tasks that stopped before their agent came online, or never came online within
# the boot timeout: a bad image, secret, network or capacity.
resource "aws_cloudwatch_metric_alarm" "failed_launches" {
  count = local.scaler ? 1 : 0

  alarm_name          = "${var.name}-failed-launches"
  alarm_description   = "Agent tasks of pool ${var.azp_pool} stopped before their agent came online (FailedLaunches). Read the stopped tasks' stoppedReason (aws ecs describe-tasks) and the agent log: image pull, secret, network egress to dev.azure.com, Spot capacity. After several in a row the scaler pauses launching for one boot timeout and retries."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.failed_launches_alarm_threshold
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "failed"
    expression  = "SELECT SUM(FailedLaunches) FROM SCHEMA(\"${local.metrics_namespace}\", Pool, Scaler) WHERE Pool = '${var.azp_pool}'"
    period      = 900
    return_data = true
  }
}

# Offline agents of the scaler whose task is gone (killed without a clean stop,
# e.g. SIGKILL after stop_timeout or an out-of-memory kill).
resource "aws_cloudwatch_metric_alarm" "agents_pruned" {
  count = local.scaler ? 1 : 0

  alarm_name          = "${var.name}-ghost-agents-pruned"
  alarm_description   = "The scaler of pool ${var.azp_pool} deleted offline agents whose task was gone (AgentsPruned): tasks ended without deregistering. Look for tasks stopped with exit code 137 (out of memory: raise the profile's memory; or killed after stopTimeout: jobs ignoring cancellation) in the cluster's stopped tasks."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "pruned"
    expression  = "SELECT SUM(AgentsPruned) FROM SCHEMA(\"${local.metrics_namespace}\", Pool, Scaler) WHERE Pool = '${var.azp_pool}'"
    period      = 3600
    return_data = true
  }
}
