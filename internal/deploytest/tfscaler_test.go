package deploytest

// scalerVars is baseVars with scaling = "scaler" and two profiles of different
// sizes and capabilities.
func scalerVars(extra map[string]any) map[string]any {
	v := baseVars(map[string]any{
		"scaling": "scaler",
		"profiles": map[string]any{
			"small": map[string]any{"cpu": 1024, "memory": 2048, "capabilities": map[string]string{"size": "small"}},
			"large": map[string]any{"cpu": 4096, "memory": 16384, "max": 4, "standby": "mon-fri 07:00-19:00=1", "timezone": "Europe/Berlin",
				"agent_mode": "persistent", "capacity_providers": "FARGATE_SPOT:3,FARGATE:1", "boot_timeout": "8m",
				"capabilities": map[string]string{"size": "large", "docker": ""}},
		},
	})
	for k, x := range extra {
		v[k] = x
	}
	return v
}
