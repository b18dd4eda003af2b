"""hello-python: greets the caller and shows the Lambda-style context."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"greeting {name}")
    return {
        "message": f"hello, {name}",
        "request_id": context.aws_request_id,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
