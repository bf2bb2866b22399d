from airflow.providers.common.compat.sdk import DAG
from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator
from my_prompts import PROMPT
with DAG('outside_dag', schedule=None, params={'image': ''}) as dag:
    RunComfyImageEditOperator(task_id='edit', image_urls=['{{ params.image }}'], prompt=PROMPT,
                              deferrable=True, poll_interval=0.2)
