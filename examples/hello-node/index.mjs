// hello-node: an async Lambda-style handler on thaw's nodejs runtime.
export const handler = async (event, context) => {
  const name = event?.name ?? "world";
  console.log(`greeting ${name}`);
  return { message: `hello, ${name}`, requestId: context.awsRequestId };
};
