# scaling = "scaler": per profile, an agent task definition (no service of agents)
# and a one-task ECS service running `azp-entrypoint scale`, which starts agent
# tasks of that definition with RunTask for the pool's queued jobs.

locals {
  # Profiles with every unset field filled from the task_* variables.
  scaler_profiles = local.scaler ? {
    for k, p in var.profiles : k => merge(p, {
      cpu                   = coalesce(p.cpu, var.task_cpu)
      memory                = coalesce(p.memory, var.task_memory)
      cpu_architecture      = coalesce(p.cpu_architecture, var.cpu_architecture)
      ephemeral_storage_gib = coalesce(p.ephemeral_storage_gib, var.ephemeral_storage_gib)
      family                = "${var.name}-${k}"
      agent_name_prefix     = "${var.agent_name_prefix}${k}-"
      capabilities = join(",", [
        for name in sort(keys(p.capabilities)) :
        p.capabilities[name] == "" ? name : "${name}=${p.capabilities[name]}"
      ])
    })
  } : {}

  # The agent container of a scaler-launched task. The scaler overrides AZP_ONCE,
  # AZP_AGENT_NAME_PREFIX, the capabilities, AZP_IDLE_TIMEOUT and
  # AZP_ECS_TASK_PROTECTION at RunTask; the same values are set here so that a
  # task started by hand behaves the same.
  scaler_agent_environment = {
    for k, p in local.scaler_profiles : k => merge(
      local.common_environment,
      {
        AZP_ONCE              = tostring(p.agent_mode == "once")
        AZP_AGENT_NAME_PREFIX = p.agent_name_prefix
        # Standalone tasks cannot be protected (ECS answers TASK_NOT_VALID); the
        # scaler never stops a busy task instead.
        AZP_ECS_TASK_PROTECTION = "false"
      },
      p.agent_mode == "once" ? { AZP_IDLE_TIMEOUT = p.idle_timeout } : {},
      var.extra_environment,
    )
  }

  scaler_agent_container_definitions = {
    for k, env in local.scaler_agent_environment : k => [
      merge(local.agent_container, {
        name        = "agent"
        environment = [for name in sort(keys(env)) : { name = name, value = env[name] }]
      })
    ]
  }

  # The scaler's own settings (contract: Scaling), from the profile.
  scaler_environment = {
    for k, p in local.scaler_profiles : k => {
      AZP_URL                      = var.azp_url
      AZP_POOL                     = var.azp_pool
      AZP_SECRET_ID                = aws_secretsmanager_secret.azp.arn
      AZP_LOG_FORMAT               = "json"
      AZP_STOP_TIMEOUT             = "${local.scaler_stop_timeout}s"
      AZP_AGENT_NAME_PREFIX        = p.agent_name_prefix
      AZP_SCALE_CLUSTER            = aws_ecs_cluster.this.arn
      AZP_SCALE_TASK_DEFINITION    = aws_ecs_task_definition.profile[k].arn
      AZP_SCALE_CONTAINER          = "agent"
      AZP_SCALE_SUBNETS            = join(",", var.subnet_ids)
      AZP_SCALE_SECURITY_GROUPS    = join(",", concat([aws_security_group.task.id], var.additional_security_group_ids))
      AZP_SCALE_PUBLIC_IP          = tostring(var.assign_public_ip)
      AZP_SCALE_CAPACITY_PROVIDERS = p.capacity_providers
      AZP_SCALE_AGENT_MODE         = p.agent_mode
      AZP_SCALE_MAX                = tostring(p.max)
      AZP_SCALE_STANDBY            = p.standby
      AZP_SCALE_TIMEZONE           = p.timezone
      AZP_SCALE_CAPABILITIES       = p.capabilities
      AZP_SCALE_BOOT_TIMEOUT       = p.boot_timeout
      AZP_SCALE_IDLE_TIMEOUT       = p.idle_timeout
    }
  }

  # The scaler exits within 5 s of SIGTERM and never stops agent tasks on its
  # way out; 30 s covers a slow final API call.
  scaler_stop_timeout = 30

  # The scaler needs no privilege at all: the image's non-root user, no
  # capability. Its health check passes while its loop ran in the last three
  # minutes; a launch breaker that paused launching does not fail it, so ECS
  # never replaces the scaler (and loses the failure streak) for it.
  scaler_container = {
    image       = local.image
    essential   = true
    user        = local.agent_user
    command     = ["scale"]
    stopTimeout = local.scaler_stop_timeout

    healthCheck = {
      command     = local.health_command
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }

    linuxParameters = {
      initProcessEnabled = false
      capabilities       = { add = [], drop = ["ALL"] }
    }

    readonlyRootFilesystem = false
    mountPoints            = []
    volumesFrom            = []

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.agent.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "scaler"
      }
    }
  }
}

# The agent task definition of each profile: started only by its scaler.
resource "aws_ecs_task_definition" "profile" {
  for_each = local.scaler_profiles

  family                   = each.value.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.scaler_agent_container_definitions[each.key])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = each.value.cpu_architecture
  }

  ephemeral_storage {
    size_in_gib = each.value.ephemeral_storage_gib
  }

  # bind: task-scoped scratch for the one agent container.
  dynamic "volume" {
    for_each = var.storage_mode == "bind" ? ["work"] : []
    content {
      name = volume.value
    }
  }

  # efs: as in fixed mode (ecs.tf).
  dynamic "volume" {
    for_each = var.storage_mode == "efs" ? ["efs"] : []
    content {
      name = volume.value

      efs_volume_configuration {
        file_system_id     = aws_efs_file_system.this[0].id
        transit_encryption = "ENABLED"

        authorization_config {
          access_point_id = aws_efs_access_point.this[0].id
          iam             = "ENABLED"
        }
      }
    }
  }
}

# The scaler's own task definition: 0.25 vCPU / 512 MiB is plenty for a loop of
# API calls.
resource "aws_ecs_task_definition" "scaler" {
  for_each = local.scaler_profiles

  family                   = "${each.value.family}-scaler"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.scaler[each.key].arn
  container_definitions = jsonencode([
    merge(local.scaler_container, {
      name        = "scaler"
      environment = [for name in sort(keys(local.scaler_environment[each.key])) : { name = name, value = local.scaler_environment[each.key][name] }]
    })
  ])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

resource "aws_ecs_service" "scaler" {
  for_each = local.scaler_profiles

  name             = "${each.value.family}-scaler"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.scaler[each.key].arn
  desired_count    = 1
  platform_version = "LATEST"

  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  enable_execute_command  = false

  # Never two scalers of one profile at once: a deployment stops the old task
  # before it starts the new one (the scaler keeps no state, so a short gap is
  # harmless; two at once could launch twice).
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # On-demand Fargate: a Spot interruption of the scaler would pause scaling.
  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = concat([aws_security_group.task.id], var.additional_security_group_ids)
    assign_public_ip = var.assign_public_ip
  }

  depends_on = [
    aws_ecs_cluster_capacity_providers.this,
    aws_iam_role_policy.scaler,
    aws_iam_role_policy.task,
    aws_iam_role_policy.execution,
  ]
}
