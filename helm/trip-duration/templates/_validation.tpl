{{/* Cross-value checks. Each message names the key to set and the fix. */}}
{{- define "td.validate" -}}
{{- $errors := list -}}
{{- if not .Values.s3.bucket -}}
{{- $errors = append $errors "s3.bucket is required: the S3 bucket for code, data and MLflow artifacts (--set s3.bucket=my-bucket)" -}}
{{- end -}}
{{- if eq .Values.apiMode "cloud" -}}
{{- if not .Values.worker.cloud.accountId -}}{{- $errors = append $errors "worker.cloud.accountId is required when apiMode=cloud" -}}{{- end -}}
{{- if not .Values.worker.cloud.workspaceId -}}{{- $errors = append $errors "worker.cloud.workspaceId is required when apiMode=cloud" -}}{{- end -}}
{{- if not .Values.worker.cloud.apiKeySecretName -}}{{- $errors = append $errors "worker.cloud.apiKeySecretName is required when apiMode=cloud: create a Secret with the API key (kubectl create secret generic prefect-cloud --from-literal=api-key=...)" -}}{{- end -}}
{{- end -}}
{{- if and (eq .Values.apiMode "server") (eq .Values.server.database.mode "external") (not .Values.server.database.existingSecret) -}}
{{- $errors = append $errors "server.database.existingSecret is required when server.database.mode=external (Secret keys: host, port, user, password, database)" -}}
{{- end -}}
{{- if and .Values.mlflow.enabled (eq .Values.mlflow.database.mode "external") (not .Values.mlflow.database.existingSecret) -}}
{{- $errors = append $errors "mlflow.database.existingSecret is required when mlflow.database.mode=external (Secret key: uri)" -}}
{{- end -}}
{{- if and (not .Values.worker.gpu.enabled) (not .Values.worker.cpu.enabled) -}}
{{- $errors = append $errors "worker.gpu.enabled and worker.cpu.enabled are both false: no flow run would ever start; enable at least one" -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nvalues check failed:\n  - %s" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
