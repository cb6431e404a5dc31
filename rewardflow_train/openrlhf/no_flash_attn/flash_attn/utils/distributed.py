"""flash_attn.utils.distributed.all_gather: concatenate every rank's tensor along dim 0,
with the gradient reduce-scattered back, in plain torch.distributed."""

import torch
import torch.distributed as dist


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        world = dist.get_world_size(group)
        output = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
        dist.all_gather_into_tensor(output, tensor.contiguous(), group=group)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        world = dist.get_world_size(ctx.group)
        grad = grad_output.new_empty((grad_output.shape[0] // world, *grad_output.shape[1:]))
        dist.reduce_scatter_tensor(grad, grad_output.contiguous(), group=ctx.group)
        return grad, None


def all_gather(tensor, process_group):
    return _AllGather.apply(tensor, process_group)
