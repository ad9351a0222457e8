# ---------------------------------------------------------------------------
# Placement

variable "region" {
  description = "AWS region for every resource of this stack."
  type        = string
}

variable "name" {
  description = "Name of the stack: ECR repository, cluster, service, task family, log group and role names derive from it."
  type        = string
  default     = "azp-agent"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource (provider default_tags)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Scaling

variable "scaling" {
  description = "How agent tasks are run. fixed: an ECS service keeps desired_count agent tasks. scaler: no service of agents; per profile, an agent task definition and a one-task scaler service (`azp-entrypoint scale`) that starts agent tasks for the pool's queued jobs."
  type        = string
  default     = "fixed"

  validation {
    condition     = contains(["fixed", "scaler"], var.scaling)
    error_message = "scaling must be fixed (a service of desired_count agents) or scaler (agent tasks started on demand by azp-entrypoint scale)."
  }
}

variable "profiles" {
  description = <<-EOT
    scaling = "scaler": one agent task definition and one scaler service per entry (the key names
    both and goes into the agent names: <agent_name_prefix><key>-<task id>-agent). Unset fields:
    cpu, memory, cpu_architecture, ephemeral_storage_gib from the task_* variables; capabilities
    (AZP_SCALE_CAPABILITIES, name => value, "" for a bare name) none; max (AZP_SCALE_MAX) 10;
    standby (AZP_SCALE_STANDBY, a number or a schedule such as "mon-fri 07:00-19:00=3") "0";
    timezone (AZP_SCALE_TIMEZONE) "UTC"; agent_mode (AZP_SCALE_AGENT_MODE) "once";
    capacity_providers (AZP_SCALE_CAPACITY_PROVIDERS) "FARGATE", e.g. "FARGATE_SPOT:3,FARGATE:1" to
    opt in to Spot; boot_timeout (AZP_SCALE_BOOT_TIMEOUT) "5m"; idle_timeout (AZP_SCALE_IDLE_TIMEOUT) "15m".
  EOT
  type = map(object({
    cpu                   = optional(number)
    memory                = optional(number)
    cpu_architecture      = optional(string)
    ephemeral_storage_gib = optional(number)
    capabilities          = optional(map(string), {})
    max                   = optional(number, 10)
    standby               = optional(string, "0")
    timezone              = optional(string, "UTC")
    agent_mode            = optional(string, "once")
    capacity_providers    = optional(string, "FARGATE")
    boot_timeout          = optional(string, "5m")
    idle_timeout          = optional(string, "15m")
  }))
  default = { default = {} }

  validation {
    condition     = length(var.profiles) > 0 && alltrue([for k in keys(var.profiles) : can(regex("^[a-z][a-z0-9-]{0,11}$", k))])
    error_message = "profiles needs at least one entry, and each key must be 1-12 characters of lower-case letters, digits and '-', starting with a letter (it names the scaler and prefixes its agents)."
  }

  validation {
    condition     = alltrue([for k in keys(var.profiles) : length("${var.agent_name_prefix}${k}-") <= 26])
    error_message = "agent_name_prefix plus a profile key and '-' must be at most 26 characters, so that <prefix><task id>-agent fits the 64-character agent name whole."
  }

  validation {
    condition     = alltrue([for p in values(var.profiles) : contains(["once", "persistent"], p.agent_mode)])
    error_message = "profiles[*].agent_mode must be once (a task runs one job and leaves) or persistent (agents live across jobs)."
  }

  validation {
    condition     = alltrue([for p in values(var.profiles) : p.max >= 1 && floor(p.max) == p.max])
    error_message = "profiles[*].max must be a whole number of tasks, at least 1."
  }

  validation {
    condition     = alltrue([for p in values(var.profiles) : can(regex("^(FARGATE|FARGATE_SPOT)(:[0-9]+(:[0-9]+)?)?(,(FARGATE|FARGATE_SPOT)(:[0-9]+(:[0-9]+)?)?)*$", p.capacity_providers))])
    error_message = "profiles[*].capacity_providers must be a strategy such as FARGATE or FARGATE_SPOT:3,FARGATE:1 (name:weight or name:weight:base)."
  }

  validation {
    condition     = alltrue([for p in values(var.profiles) : can(regex("^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$", p.boot_timeout)) && can(regex("^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$", p.idle_timeout))])
    error_message = "profiles[*].boot_timeout and idle_timeout must be durations such as 5m or 90s."
  }

  validation {
    condition     = alltrue([for p in values(var.profiles) : p.cpu_architecture == null || contains(["X86_64", "ARM64"], coalesce(p.cpu_architecture, "X86_64"))])
    error_message = "profiles[*].cpu_architecture must be X86_64 or ARM64."
  }

  validation {
    condition = alltrue(flatten([for p in values(var.profiles) : [
      for name, value in p.capabilities : can(regex("^[A-Za-z_][A-Za-z0-9_.-]*$", name)) && !strcontains(value, ",") && !startswith(upper(name), "AZP_")
    ]]))
    error_message = "profiles[*].capabilities: names are environment variable names (letters, digits, _, ., -), not AZP_* settings, and values hold no comma."
  }
}

variable "agent_container_user" {
  description = "root (default): azp-entrypoint starts as uid 0 with CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID and KILL only, keeps the agent's registration and binaries root-owned, and runs the listener and jobs as the image's `agent` user. non-root: the container runs as 1000:1000 with no capability, for organisations that require non-root containers (e.g. AWS Control Tower CT.ECS.PR.3); jobs can then rewrite the agent's own files (see README)."
  type        = string
  default     = "root"

  validation {
    condition     = contains(["root", "non-root"], var.agent_container_user)
    error_message = "agent_container_user must be root or non-root."
  }
}

# ---------------------------------------------------------------------------
# Azure DevOps

variable "azp_url" {
  description = "Azure DevOps organisation or collection URL (AZP_URL), e.g. https://dev.azure.com/acme."
  type        = string

  validation {
    condition     = can(regex("^https?://[^/]+", var.azp_url))
    error_message = "azp_url must be an http(s) URL such as https://dev.azure.com/acme."
  }
}

variable "azp_pool" {
  description = "Agent pool name (AZP_POOL)."
  type        = string
  default     = "Default"
}

variable "agent_name_prefix" {
  description = "Prefix of the agent names (AZP_AGENT_NAME_PREFIX); names are <prefix><task id>-<container name>. Also what `azp-entrypoint prune` matches."
  type        = string
  default     = "ecs-"
}

variable "agent_version" {
  description = "Pin the agent version (AZP_AGENT_VERSION). Empty: the version baked into the image, else the latest."
  type        = string
  default     = ""
}

variable "once" {
  description = "Run one job per container, then deregister and exit (AZP_ONCE); the service then starts a fresh task."
  type        = bool
  default     = false
}

variable "task_protection" {
  description = "Hold ECS task scale-in protection while a job runs (AZP_ECS_TASK_PROTECTION)."
  type        = bool
  default     = true
}

variable "extra_environment" {
  description = "More environment variables for the agent containers, e.g. AZP_IDLE_TIMEOUT or HTTPS_PROXY. Never put a credential here: use the secret."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k in keys(var.extra_environment) :
      !contains(["AZP_TOKEN", "AZP_CLIENTSECRET", "AZP_SECRET_ID", "AZP_STOP_TIMEOUT"], k)
    ])
    error_message = "extra_environment must not set AZP_TOKEN or AZP_CLIENTSECRET (put credentials in the secret), nor AZP_SECRET_ID or AZP_STOP_TIMEOUT (this module sets them)."
  }
}

# ---------------------------------------------------------------------------
# Secret

variable "secret_kms_key_arn" {
  description = "Customer-managed KMS key for the token secret. null: the AWS managed key aws/secretsmanager."
  type        = string
  default     = null
}

variable "secret_recovery_window_days" {
  description = "Days Secrets Manager keeps the secret after deletion (0 deletes at once, 7-30 otherwise)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

variable "azp_token" {
  description = "Optional. The personal access token, written with a write-only argument so it never enters the plan or state (needs azp_token_version). Leave null and use `aws secretsmanager put-secret-value` instead (see README)."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "azp_token_version" {
  description = "Set (and bump on each rotation) to write azp_token into the secret. null: Terraform never writes a secret value."
  type        = number
  default     = null
}

# ---------------------------------------------------------------------------
# Image

variable "image_tag" {
  description = "Image tag in the ECR repository, used when image_digest is null. Tags are immutable."
  type        = string
  default     = "latest"
}

variable "image_digest" {
  description = "Image digest (sha256:...) in the ECR repository. When set, the task uses the image by digest (recommended)."
  type        = string
  default     = null

  validation {
    condition     = var.image_digest == null || can(regex("^sha256:[0-9a-f]{64}$", var.image_digest))
    error_message = "image_digest must look like sha256:<64 hex digits>."
  }
}

variable "ecr_kms_key_arn" {
  description = "Customer-managed KMS key for the ECR repository. null: AES256."
  type        = string
  default     = null
}

variable "ecr_keep_images" {
  description = "The ECR lifecycle policy keeps this many most recent images."
  type        = number
  default     = 30
}

variable "ecr_untagged_expiry_days" {
  description = "The ECR lifecycle policy expires untagged images after this many days."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------------------
# Task

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (the image must be built for it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_cpu" {
  description = "Task CPU units (Fargate sizes: 256, 512, 1024, 2048, 4096, 8192, 16384)."
  type        = number
  default     = 2048
}

variable "task_memory" {
  description = "Task memory in MiB (must fit task_cpu on Fargate)."
  type        = number
  default     = 4096
}

variable "ephemeral_storage_gib" {
  description = "Task ephemeral storage in GiB (21-200). The image and, in ephemeral mode, the work directory live here."
  type        = number
  default     = 30

  validation {
    condition     = var.ephemeral_storage_gib >= 21 && var.ephemeral_storage_gib <= 200
    error_message = "ephemeral_storage_gib must be between 21 and 200."
  }
}

variable "agents_per_task" {
  description = "Agent containers per task. They share the task's work volume (bind, ebs) or file system (efs), each leasing its own slot."
  type        = number
  default     = 1

  validation {
    condition     = var.agents_per_task >= 1 && var.agents_per_task <= 10 && floor(var.agents_per_task) == var.agents_per_task
    error_message = "agents_per_task must be a whole number between 1 and 10."
  }

  validation {
    condition     = var.scaling == "fixed" || var.agents_per_task == 1
    error_message = "scaling = \"scaler\" runs one agent per task: set agents_per_task = 1 (the scaler counts tasks as agents)."
  }
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL (ECS stopTimeout, max 120 on Fargate); passed to the agent as AZP_STOP_TIMEOUT so its stop plan fits."
  type        = number
  default     = 120

  validation {
    condition     = var.stop_timeout >= 10 && var.stop_timeout <= 120 && floor(var.stop_timeout) == var.stop_timeout
    error_message = "stop_timeout must be a whole number of seconds between 10 and 120 (the Fargate maximum)."
  }
}

variable "health_check_start_period" {
  description = "Seconds ECS waits before counting failed health checks: cover the agent download and configuration."
  type        = number
  default     = 180

  validation {
    condition     = var.health_check_start_period >= 0 && var.health_check_start_period <= 300
    error_message = "health_check_start_period must be between 0 and 300 seconds."
  }
}

# ---------------------------------------------------------------------------
# Service

variable "desired_count" {
  description = "Number of agent tasks the service keeps running."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 0
    error_message = "desired_count must not be negative."
  }
}

variable "fargate_base" {
  description = "Tasks always placed on on-demand Fargate before the weights apply."
  type        = number
  default     = 1
}

variable "fargate_weight" {
  description = "Relative share of tasks beyond the base placed on on-demand Fargate."
  type        = number
  default     = 0
}

variable "fargate_spot_weight" {
  description = "Relative share of tasks beyond the base placed on Fargate Spot (a 2-minute warning, which stop_timeout 120 uses in full)."
  type        = number
  default     = 1

  validation {
    condition     = var.fargate_spot_weight >= 0 && var.fargate_weight >= 0 && var.fargate_spot_weight + var.fargate_weight > 0
    error_message = "fargate_spot_weight and fargate_weight must not be negative, and at least one must be above 0."
  }
}

# ---------------------------------------------------------------------------
# Storage

variable "storage_mode" {
  description = "Where the work directory lives: ephemeral (task storage), bind (a task volume shared by the task's agents), ebs (a new EBS volume per task), efs (EFS for the package and tool caches; the work directory too with efs_work)."
  type        = string
  default     = "ephemeral"

  validation {
    condition     = contains(["ephemeral", "bind", "ebs", "efs"], var.storage_mode)
    error_message = "storage_mode must be one of ephemeral, bind, ebs, efs."
  }

  validation {
    condition     = var.scaling == "fixed" || var.storage_mode != "ebs"
    error_message = "storage_mode = \"ebs\" is not supported with scaling = \"scaler\" (per-task EBS volumes are configured by an ECS service, and the scaler starts standalone tasks): use ephemeral (up to 200 GiB with ephemeral_storage_gib), bind or efs."
  }
}

variable "ebs_size_gib" {
  description = "EBS volume size per task (storage_mode = ebs)."
  type        = number
  default     = 100
}

variable "ebs_volume_type" {
  description = "EBS volume type (storage_mode = ebs)."
  type        = string
  default     = "gp3"
}

variable "ebs_iops" {
  description = "EBS IOPS (gp3, io1, io2); null: the type's default."
  type        = number
  default     = null
}

variable "ebs_throughput" {
  description = "EBS throughput in MiB/s (gp3); null: the default."
  type        = number
  default     = null
}

variable "ebs_kms_key_arn" {
  description = "Customer-managed KMS key for the EBS volumes; its key policy must let the ECS infrastructure role use it. null: the account's default EBS key."
  type        = string
  default     = null
}

variable "efs_work" {
  description = "storage_mode = efs: put the work directory on EFS too (slow for git checkouts; sets AZP_WORK_SHARED). false: only the package and tool caches."
  type        = bool
  default     = false
}

variable "efs_throughput_mode" {
  description = "EFS throughput mode: elastic, bursting or provisioned."
  type        = string
  default     = "elastic"

  validation {
    condition     = contains(["elastic", "bursting", "provisioned"], var.efs_throughput_mode)
    error_message = "efs_throughput_mode must be elastic, bursting or provisioned."
  }
}

variable "efs_provisioned_throughput_mibps" {
  description = "Provisioned throughput when efs_throughput_mode = provisioned."
  type        = number
  default     = null
}

variable "efs_kms_key_arn" {
  description = "Customer-managed KMS key for EFS encryption at rest. null: the AWS managed key aws/elasticfilesystem."
  type        = string
  default     = null
}

variable "efs_subnet_ids" {
  description = "Subnets for EFS mount targets, one per Availability Zone. null: subnet_ids (which must then be one per AZ)."
  type        = list(string)
  default     = null
}

# ---------------------------------------------------------------------------
# Network

variable "vpc_id" {
  description = "VPC of the subnets."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the tasks: private subnets with a route to a NAT gateway or proxy (Azure DevOps is on the internet)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "additional_security_group_ids" {
  description = "More security groups for the tasks, e.g. one that allows your proxy port."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT; not recommended)."
  type        = bool
  default     = false
}

variable "https_egress_cidrs" {
  description = "CIDRs the tasks may reach on 443. Azure DevOps publishes no stable CIDR list for dev.azure.com, so the default is everywhere (through your NAT or proxy)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "create_vpc_endpoints" {
  description = "Create interface endpoints (ecr.api, ecr.dkr, logs, secretsmanager) so AWS traffic stays off the NAT. Azure DevOps still needs NAT or a proxy."
  type        = bool
  default     = false
}

variable "vpc_endpoint_route_table_ids" {
  description = "Route tables for the S3 gateway endpoint (image layers) when create_vpc_endpoints is true; empty: no S3 endpoint."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------
# Logs

variable "log_retention_days" {
  description = "CloudWatch Logs retention in days (required: logs are never kept forever by accident)."
  type        = number

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "log_kms_key_arn" {
  description = "Customer-managed KMS key for the log group; its key policy must allow logs.<region>.amazonaws.com."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Monitoring

variable "alarm_topic_arn" {
  description = "SNS topic ARN that the alarms notify (alarm and OK). null: alarms only change state, nobody is told."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)."
  }
}

variable "pending_job_slo_seconds" {
  description = "scaling = scaler: alarm when the oldest job the scaler counts as pending has waited longer than this (OldestPendingAge)."
  type        = number
  default     = 600

  validation {
    condition     = var.pending_job_slo_seconds >= 60
    error_message = "pending_job_slo_seconds must be at least 60 (the scaler reports at most once a minute)."
  }
}

variable "failed_launches_alarm_threshold" {
  description = "scaling = scaler: alarm when a pool's scalers count this many failed launches (tasks whose agent never came online) within 15 minutes."
  type        = number
  default     = 3

  validation {
    condition     = var.failed_launches_alarm_threshold >= 1
    error_message = "failed_launches_alarm_threshold must be at least 1."
  }
}
